#!/usr/bin/env bash
# Start the fill-mask service, installing what is missing first.
#
#   ./run.sh                       # fresh Debian / Raspberry Pi OS: needs python3 + python3-venv
#   ./run.sh ./bert-base-chinese   # export from a local save_pretrained copy (no hub access)
#   ./run.sh --prepare             # install and export only (before enabling the service)
#   ./run.sh --check               # say what would be done, change nothing
#
# 1. .venv with requirements.txt (serving only: onnxruntime, tokenizers, numpy, flask, gunicorn);
#    skipped when .venv/.requirements.sha256 matches requirements.txt.
# 2. When $MODEL_DIR has no manifest.json: a separate .venv-export with torch (pinned, first, from
#    PyTorch's CPU wheel index) and requirements-export.txt, then export_onnx.py --int8. Delete
#    .venv-export afterwards to reclaim ~1 GB; it is only needed to export again.
# 3. exec gunicorn with gunicorn.conf.py (BIND, WORKERS, MODEL_PRECISION, ...: README).
#
# Environment: MODEL_DIR (models/bert-base-chinese), MODEL_SOURCE (hub id or local directory;
# the first argument wins), PYTHON (python3), VENV (.venv), EXPORT_VENV (.venv-export),
# TORCH_INDEX_URL (PyTorch's CPU index; empty: take torch from PyPI, the CUDA build).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXPORT_VENV="${EXPORT_VENV:-.venv-export}"
export MODEL_DIR="${MODEL_DIR:-models/bert-base-chinese}"
MODEL_SOURCE="${MODEL_SOURCE:-google-bert/bert-base-chinese}"
TORCH_PIN="torch==2.13.0"
# PyPI's torch is the CUDA build on x86-64 and on aarch64 alike (several GB of NVIDIA packages);
# this index has the CPU-only build of the same version.
TORCH_INDEX_URL="${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
CHECK=0
PREPARE=0

for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    --prepare) PREPARE=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    *) MODEL_SOURCE="$arg" ;;
  esac
done

say() { printf '%s\n' "$*"; }

# The stamp names exactly what was installed, so an edited requirements file reinstalls.
requirements_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

venv_ready() {   # venv_ready DIR REQUIREMENTS...
  local dir="$1"; shift
  [ -x "$dir/bin/python" ] && "$dir/bin/python" -c '' 2>/dev/null \
    && [ "$(cat "$dir/.requirements.sha256" 2>/dev/null)" = "$(requirements_hash "$@")" ]
}

make_venv() {    # make_venv DIR PIP_ARGS...: create DIR if needed, pip install, write the stamp
  local dir="$1"; shift
  if [ ! -x "$dir/bin/python" ]; then
    "$PYTHON" -m venv "$dir" || {
      say "run.sh: could not create $dir; on Debian / Raspberry Pi OS: sudo apt install python3-venv" >&2
      exit 1
    }
  fi
  "$dir/bin/python" -m pip install -q "$@"
}

serving_venv() {
  if venv_ready "$VENV" requirements.txt; then
    say "venv: $VENV up to date"
    return
  fi
  say "venv: install requirements.txt into $VENV"
  [ "$CHECK" = 1 ] && return
  make_venv "$VENV" -r requirements.txt
  requirements_hash requirements.txt >"$VENV/.requirements.sha256"
}

model() {
  if [ -f "$MODEL_DIR/manifest.json" ]; then
    say "model: $MODEL_DIR present"
    return
  fi
  say "model: export $MODEL_SOURCE to $MODEL_DIR (torch in $EXPORT_VENV; a few minutes, 2.5 GB of memory)"
  if venv_ready "$EXPORT_VENV" requirements-export.txt requirements.txt; then
    say "export venv: $EXPORT_VENV up to date"
  else
    say "export venv: install $TORCH_PIN (${TORCH_INDEX_URL:-PyPI}) and requirements-export.txt into $EXPORT_VENV"
    if [ "$CHECK" = 0 ]; then
      # The pinned CPU torch first, so requirements-export.txt finds it satisfied.
      make_venv "$EXPORT_VENV" "$TORCH_PIN" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} || {
        say "run.sh: could not install $TORCH_PIN from ${TORCH_INDEX_URL:-PyPI}. Export on a PC and" \
            "copy models/ (README, \"Raspberry Pi\"), or set TORCH_INDEX_URL= to take PyPI's" \
            "CUDA build (several GB)." >&2
        exit 1
      }
      "$EXPORT_VENV/bin/python" -m pip install -q -r requirements-export.txt
      requirements_hash requirements-export.txt requirements.txt >"$EXPORT_VENV/.requirements.sha256"
    fi
  fi
  [ "$CHECK" = 1 ] && return
  # Export next to the target and move it in only when the parity check passed, so a failed or
  # interrupted export is never mistaken for a model on the next start.
  rm -rf "$MODEL_DIR.partial"
  mkdir -p "$(dirname "$MODEL_DIR")"
  "$EXPORT_VENV/bin/python" export_onnx.py --model "$MODEL_SOURCE" --output "$MODEL_DIR.partial" --int8
  mv "$MODEL_DIR.partial" "$MODEL_DIR"
}

serving_venv
model
[ "$PREPARE" = 1 ] && { say "prepared: start with ./run.sh or the systemd unit"; exit 0; }
say "serve: gunicorn -c gunicorn.conf.py app:app (BIND=${BIND:-0.0.0.0:5000}, MODEL_DIR=$MODEL_DIR, MODEL_PRECISION=${MODEL_PRECISION:-fp32})"
[ "$CHECK" = 1 ] && exit 0
exec "$VENV/bin/gunicorn" -c gunicorn.conf.py app:app
