"""The exported model directory: its manifest, its files, and their checksums."""

import hashlib
import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFilesError

MANIFEST = "manifest.json"
PRECISION_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
SPECIAL_TOKENS = ("cls", "sep", "mask")
# Set by the Gunicorn master for its workers: {directory: why} of the models its full (sha256)
# check refused. Workers only compare sizes, so without it they would serve a same-size damaged
# or replaced model the master has said is not served.
REFUSED_ENV = "FILLMASK_REFUSED_MODELS"
EXPORT_HINT = "create it with: python export_onnx.py --output {dir} [--int8]"


@dataclass(frozen=True)
class ModelFiles:
    """Paths and metadata of one exported model at one precision."""

    directory: Path
    manifest: dict
    onnx_path: Path  # the precision's graph
    tokenizer_path: Path
    name: str  # the manifest's model_name, else the directory's name


def sha256_of(path):
    """Hex sha256 of a file, read in chunks so a 400 MB model costs no memory."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def open_model_dir(directory, precision="fp32", verify="size", check_parity=True):
    """Check a model directory and return its ``ModelFiles``.

    ``verify``: "sha256" hashes every file against the manifest (slow for fp32, ~1 s on a PC,
    several on a Pi: done once by the Gunicorn master), "size" compares sizes only (each worker),
    "none" skips the comparison. ``check_parity``: refuse a model whose export did not pass its
    parity check with PyTorch (off only for the exporter, which runs that check). A file or
    directory the service cannot read or list is a ``ModelFilesError`` naming it and the user.
    """
    try:
        return _open_model_dir(Path(directory), precision, verify, check_parity)
    except OSError as exc:
        raise ModelFilesError(unreadable(exc, directory)) from None


def unreadable(exc, directory):
    """The one-line message for an OSError met while reading the model directory."""
    path = exc.filename or directory
    if not isinstance(exc, PermissionError):
        return f"cannot read {path}: {exc.strerror or exc}"
    uid = os.geteuid()
    try:  # an image's uid often has no passwd entry
        user = f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        user = f"uid {uid}"
    # Exported by another account (export_onnx.py's directory used to be 0700): a+rX gives
    # everyone read access and directories their search bit, and makes no file executable.
    return (
        f"cannot read {path}: permission denied for {user}; make the model readable to it, "
        f"e.g. chmod -R a+rX {directory}"
    )


def _open_model_dir(directory, precision, verify, check_parity):
    """``open_model_dir`` without the translation of OSError."""
    hint = EXPORT_HINT.format(dir=directory)
    if precision not in PRECISION_FILES:
        raise ModelFilesError(
            f"MODEL_PRECISION must be one of {sorted(PRECISION_FILES)}, not {precision!r}"
        )
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ModelFilesError(f"no exported model at {directory} (missing {MANIFEST}); {hint}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except PermissionError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"{manifest_path} is unreadable ({exc}); {hint}") from None
    _check_manifest(manifest, manifest_path, hint)
    name = manifest.get("model_name") or directory.name
    onnx_path, tokenizer_path = directory / PRECISION_FILES[precision], directory / "tokenizer.json"
    # A model whose ONNX graph did not reproduce PyTorch when it was exported is refused.
    fp32 = (manifest.get("parity") or {}).get("fp32") or {}
    if check_parity and fp32.get("passed") is not True:
        state = "failed" if fp32.get("passed") is False else "was never completed"
        raise ModelFilesError(
            f"model {name} at {directory}: its parity check with PyTorch {state} "
            f"(manifest parity.fp32.passed), so its answers cannot be trusted; {hint}"
        )
    for path in (onnx_path, tokenizer_path):
        if not path.is_file():
            extra = " --int8" if precision == "int8" else ""
            raise ModelFilesError(
                f"missing {path}; create it with: python export_onnx.py --output {directory}{extra}"
            )
        open(path, "rb").close()  # readable by this user: the worker loads it later
        _verify(path, manifest["files"].get(path.name), verify, hint)
    return ModelFiles(directory, manifest, onnx_path, tokenizer_path, name)


def _check_manifest(manifest, path, hint):
    """Refuse a manifest without the entries the predictor reads (a one-line error, no KeyError)."""
    manifest = manifest if isinstance(manifest, dict) else {}
    special = manifest.get("special_tokens")
    special = special if isinstance(special, dict) else {}
    missing = [] if isinstance(manifest.get("files"), dict) else ["files"]
    missing += [f"special_tokens.{k}" for k in SPECIAL_TOKENS if type(special.get(k)) is not int]
    if missing:
        raise ModelFilesError(f"{path} lacks {', '.join(missing)}; {hint}")


def _verify(path, expected, mode, hint):
    """Compare one file with its manifest entry."""
    if mode == "none":
        return
    if not isinstance(expected, dict) or type(expected.get("bytes")) is not int:
        raise ModelFilesError(f"{path.name} is not listed in the manifest with its size; {hint}")
    size = path.stat().st_size
    if size != expected["bytes"]:
        wrong = f"has {size} bytes, the manifest says {expected['bytes']}"
    elif mode == "sha256" and sha256_of(path) != expected.get("sha256"):
        wrong = "does not match its sha256 in the manifest"
    else:
        return
    raise ModelFilesError(f"{path} {wrong}: the file is damaged or was replaced; {hint}")


def file_entry(path):
    """Manifest entry of one file: sha256 and size."""
    return {"sha256": sha256_of(path), "bytes": Path(path).stat().st_size}
