#!/usr/bin/env bash
# The test command: ./run.sh --test [--prepare] [PYTEST_ARGS...] (docs/development.md).
#
# Needs python3 + python3-venv only. Creates .venv-test (reused while its stamp matches the
# requirements files and constraints.txt), with torch as the CPU build and requirements-dev.txt,
# all at the versions of constraints.txt; then:
#   1. ruff check + ruff format --check (a finding fails the command);
#   2. without PYTEST_ARGS: the whole suite (FILLMASK_TEST_SEED=0, FUZZ_EXAMPLES=400,
#      SCHEMATHESIS_EXAMPLES=100 unless set), then the fast tests with
#      FILLMASK_TEST_SEED=1 and 2 (-m "not browser and not load and not install and not
#      container": run.sh's tests and the container's do not depend on the weights), then the
#      emulated Raspberry Pi check (scripts/pi-check.sh) when running as root with its tools
#      installed;
#      with PYTEST_ARGS: one pytest run with them (FILLMASK_TEST_SEED as set, default 0).
# Every step runs; the exit status is non-zero if any failed.
#
# Environment: PYTHON (python3), TEST_VENV (.venv-test), TORCH_INDEX_URL (default: PyTorch's
# CPU index if it answers within 5 s, else the default index; empty: the default index),
# PI_CHECK (unset: run it when possible; 1: fail if it cannot run; 0: skip it).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TEST_VENV="${TEST_VENV:-.venv-test}"
REQUIREMENTS=(requirements.txt requirements-export.txt requirements-dev.txt constraints.txt)
PI_TOOLS=(debootstrap qemu-aarch64-static chroot curl)

say() { printf '%s\n' "$*"; }
# shellcheck source=scripts/venv.sh
. scripts/venv.sh

PREPARE=0
PYTEST_ARGS=()
for arg in "$@"; do
  if [ "$arg" = --prepare ]; then PREPARE=1; else PYTEST_ARGS+=("$arg"); fi
done

test_venv() {
  if venv_ready "$TEST_VENV" "${REQUIREMENTS[@]}"; then
    say "test venv: $TEST_VENV up to date"
    return
  fi
  make_venv "$TEST_VENV"
  local index pin
  index="$(torch_index)"
  pin="$(torch_pin)"
  say "test venv: install $pin (${index:-default index}) and requirements-dev.txt into $TEST_VENV"
  "$TEST_VENV/bin/python" -m pip install -q -c constraints.txt "$pin" ${index:+--index-url "$index"}
  "$TEST_VENV/bin/python" -m pip install -q -c constraints.txt -r requirements-dev.txt
  requirements_hash "${REQUIREMENTS[@]}" >"$TEST_VENV/.requirements.sha256"
}

FAILED=()
step() {   # step NAME COMMAND...: run it, remember a failure, go on
  local name="$1"; shift
  say "== $name"
  "$@" || FAILED+=("$name")
}

pytest_pass() {   # pytest_pass SEED ARGS...
  local seed="$1"; shift
  FILLMASK_TEST_SEED="$seed" "$TEST_VENV/bin/python" -m pytest "$@"
}

pi_check() {
  local missing=()
  [ "$(id -u)" = 0 ] || missing+=(root)
  for tool in "${PI_TOOLS[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    say "pi-check: skipped, missing ${missing[*]} (sudo apt install debootstrap qemu-user-static" \
        "curl; then sudo scripts/pi-check.sh, about 8 minutes)"
    [ "${PI_CHECK:-}" != 1 ]
    return
  fi
  PYTHON="$PWD/$TEST_VENV/bin/python" scripts/pi-check.sh
}

test_venv
[ "$PREPARE" = 1 ] && { say "prepared: $TEST_VENV"; exit 0; }

step "ruff check" "$TEST_VENV/bin/ruff" check .
step "ruff format --check" "$TEST_VENV/bin/ruff" format --check .
if [ "${#PYTEST_ARGS[@]}" -gt 0 ]; then
  step "pytest ${PYTEST_ARGS[*]}" pytest_pass "${FILLMASK_TEST_SEED:-0}" "${PYTEST_ARGS[@]}"
else
  FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-400}" SCHEMATHESIS_EXAMPLES="${SCHEMATHESIS_EXAMPLES:-100}" \
    step "pytest, the whole suite, seed 0 (more fuzzing)" pytest_pass 0
  for seed in 1 2; do
    step "pytest, fast tests, seed $seed" \
      pytest_pass "$seed" -q -m "not browser and not load and not install and not container"
  done
  [ "${PI_CHECK:-}" = 0 ] || step "Raspberry Pi check (emulated)" pi_check
fi

if [ "${#FAILED[@]}" -gt 0 ]; then
  say "test: FAILED: $(IFS=';'; echo "${FAILED[*]}")" >&2
  exit 1
fi
say "test: all passed"
