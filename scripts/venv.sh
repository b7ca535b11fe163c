# Sourced by run.sh and scripts/test.sh: virtual environments stamped with what was installed.
# Uses $PYTHON (the interpreter that creates them) and the caller's say().

# The stamp names exactly what was installed, so an edited requirements file reinstalls.
requirements_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

# A venv runs when its python starts and is the Python it was made with (pyvenv.cfg's version):
# a dangling bin/python (Python removed) or a venv of another Python version both fail here.
venv_runs() {
  local made
  [ -x "$1/bin/python" ] || return 1
  made="$(sed -n 's/^version *= *\([0-9]*\.[0-9]*\).*/\1/p' "$1/pyvenv.cfg" 2>/dev/null | head -n 1)"
  "$1/bin/python" -c 'import sys; sys.exit(sys.argv[1] not in ("", "%d.%d" % sys.version_info[:2]))' \
    "$made" 2>/dev/null
}

has_pip() { "$1/bin/python" -c 'import pip' 2>/dev/null; }

venv_ready() {   # venv_ready DIR FILES...: runs, and its stamp matches FILES
  local dir="$1"; shift
  venv_runs "$dir" && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$(requirements_hash "$@")" ]
}

make_venv() {    # make_venv DIR: create DIR, or recreate it when its python or pip does not run
  local dir="$1" clear=()
  venv_runs "$dir" && has_pip "$dir" && return 0
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    if [ ! -f "$dir/pyvenv.cfg" ]; then
      say "$dir exists and is not a virtual environment: move it away, or set another path" >&2
      exit 1
    fi
    say "venv: $dir/bin/python or its pip does not run (Python upgraded or removed?): recreating $dir"
    clear=(--clear)
  fi
  "$PYTHON" -m venv "${clear[@]}" "$dir" && has_pip "$dir" || {
    say "could not create $dir with $PYTHON; on Debian / Raspberry Pi OS: sudo apt install python3-venv" >&2
    exit 1
  }
}

torch_pin() { grep -E '^torch==' requirements-export.txt; }

# PyPI's torch is the CUDA build on x86-64 and on aarch64 alike (several GB of NVIDIA packages);
# PyTorch's CPU index has the CPU-only build of the same version.
CPU_INDEX="https://download.pytorch.org/whl/cpu"

torch_index() {   # the index to take torch from; empty: the default index
  if [ -n "${TORCH_INDEX_URL+set}" ]; then
    printf '%s' "$TORCH_INDEX_URL"
  elif "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
      "$CPU_INDEX/torch/" 2>/dev/null; then
    printf '%s' "$CPU_INDEX"
  else
    say "torch: PyTorch's CPU index did not answer; taking torch from the default index (a local" \
        "CPU wheel when pip has one; on PyPI, the CUDA build of several GB)" >&2
  fi
}
