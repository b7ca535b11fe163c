#!/usr/bin/env bash
# Regenerate constraints.txt, the exact versions run.sh, the test command and CI install.
#
#   scripts/lock.sh            # after editing a requirements*.txt; uses .venv-test's pip-compile
#   PYTHON=/path/to/python scripts/lock.sh   # a Python 3.11 with pip-tools installed
#
# pip-compile (pip-tools) resolves requirements-dev.txt (which includes requirements-export.txt
# and requirements.txt) for Python 3.11, the Python of Debian bookworm and Raspberry Pi OS. torch
# is resolved as the CPU build (PyTorch's CPU index when reachable, else whatever the default
# index has) and written without its local label (torch==2.13.0 matches 2.13.0+cpu). Then every
# serving and export package is checked for an aarch64 wheel of the locked version, so the
# Raspberry Pi installs exactly these versions (scripts/pi-check.sh proves it under emulation).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv-test/bin/python}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"
OUT=constraints.txt

index_args=()
if "$PYTHON" - "$CPU_INDEX/torch/" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=5)
PY
  index_args=(--extra-index-url "$CPU_INDEX")
fi

CUSTOM_COMPILE_COMMAND="scripts/lock.sh" "$PYTHON" -m piptools compile --quiet \
  --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
  --allow-unsafe "${index_args[@]}" --output-file "$OUT.new" requirements-dev.txt
# Constraints name no local labels: the same pin must match the CPU wheels of x86-64 and aarch64.
sed -i -E 's/^(torch==[^+ ]+)\+[a-z0-9.]+/\1/' "$OUT.new"
if grep -nE '^(nvidia-|triton==)' "$OUT.new"; then
  rm -f "$OUT.new"
  echo "lock: the resolved torch is a CUDA build (lines above); install pip-tools where PyTorch's CPU index or a CPU wheel is available" >&2
  exit 1
fi

# Every package a Raspberry Pi installs (serving + export, torch aside: it comes from PyTorch's
# index there) must have an aarch64 wheel of the locked version.
# pip takes --platform literally: name every glibc up to bookworm's 2.36.
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
check="$(mktemp -d)"
trap 'rm -rf "$check"' EXIT
grep -vE '^(torch==|-r )' requirements-export.txt >"$check/pi-export.txt"
if ! "$PYTHON" -m pip download --quiet --no-cache-dir -d "$check/wheels" --only-binary=:all: \
    "${platforms[@]}" --python-version 3.11 \
    -c "$OUT.new" -r requirements.txt -r "$check/pi-export.txt"; then
  rm -f "$OUT.new"
  echo "lock: a locked version has no aarch64 wheel (above): pin that package lower in a requirements file and rerun" >&2
  exit 1
fi
mv "$OUT.new" "$OUT"
echo "lock: wrote $OUT ($(grep -c '==' "$OUT") pins)"
