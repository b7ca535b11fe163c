"""The onnxruntime session of one model file: options, providers, shared weights, malloc policy.

One explicit ``create_session`` for the predictor, the benchmark and the exporter's checks.

Shared weights (``shared=True``, what the workers use): onnxruntime memory-maps initializers kept
in an external data file, so every process mapping one file shares its pages; but prepacking
(the GEMM kernels' own weight layout) copies them again to each session's heap. With
``session.save_external_prepacked_constant_initializers`` onnxruntime writes the prepacked
weights into the external data too, and later sessions map them (onnxruntime PRs #22256,
#23069). Measured on bert-base-chinese's shape: each worker beyond the first then adds ~80 MB
instead of ~500 (fp32), with bit-identical answers and the same latency; turning prepacking off
also shares pages, but measured 1.7-2.4x slower. The packed layout is chosen by the CPU's
kernels, so the copy is made where it is served, by the first worker under a file lock, and
keyed by the source file, onnxruntime's version and the CPU (``weights_key``): a model directory
copied from a PC to a Pi, or a stale copy, gets a new one, never a foreign one.
"""

import contextlib
import ctypes
import fcntl
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path

import onnxruntime as ort

from .errors import ModelFilesError
from .model_files import sha256_of

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt() parameter number in glibc's malloc.h
AT_HWCAP, AT_HWCAP2 = 16, 26  # getauxval() keys: the CPU features the kernel reports (ARM)
CPU_FIELDS = {"model name", "flags", "Features", "CPU implementer", "CPU part", "CPU variant"}
LAYOUT = 1  # bump when the options a copy is made with change: older copies are then rebuilt
DATA = "model.data"
STAMP = "stamp.json"
CPU = "CPUExecutionProvider"
UNSHARED = "SHARE_WEIGHTS=0 loads the model without it"  # the way out when the copy fails


def return_freed_memory():
    """Make glibc hand large freed blocks back to the OS at once (fixed 1 MiB mmap threshold).

    Loading a model parses the whole ONNX file and copies every weight out of it; with glibc's
    default (a threshold that grows as big blocks are freed) the parsed copy stayed in the heap,
    measured +30 MB per fp32 worker and +90 MB per int8 one, for nothing. A process-wide policy,
    so the worker sets it (``FillService.load``), not ``create_session``: in a process that
    also runs PyTorch (bench.py) it made PyTorch's allocations page-fault, 6-17 % slower.
    1 MiB, not 64 KiB as before: every row of log-probabilities (84 KB for a
    21,128-token vocabulary) and every temporary of the top-k was then an mmap, page faults and
    an munmap, which tripled the top-k's time (39 -> 125 µs per mask) for at most 7 MB saved
    (int8 without shared weights; 1 MB fp32; nothing with them). The weights' blocks are MBs.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)


def create_session(path, threads=1, *, shared=False, cache_dir="", verify="size"):
    """An ``InferenceSession`` on the CPU with explicit, measured options.

    Sequential execution with ``threads`` intra-op threads: the parallel executor measured 2x
    slower for BERT's chain of ops, and inter-op threads would only compete with intra-op ones.
    SkipLayerNormalization fusion stays off: its kernel measured slower than Add +
    LayerNormalization (see ``fillmask.export.fusion_options``). Pool threads sleep instead of
    spinning between operators: with 2 threads on a 2-core machine shared with other work a run
    measured 15-30 % faster (spinning threads steal the cores the busy ones need); with 1 thread
    (no pool) it changes nothing.

    ``shared``: load the machine's prepacked copy of ``path`` (made now if missing or stale)
    from ``cache_dir`` (default: ``weights_cache_dir``); ``verify="sha256"`` also hashes it.
    """
    if not shared:
        return _load(path, threads)
    source = Path(path)
    cache = weights_cache_dir(source.parent, cache_dir)
    entry = cache / f"{source.name}-{weights_key(source)}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = open(cache / f"{source.name}.lock", "a")
        # Shared while loading: a rebuild (exclusive) never removes files being mapped.
        fcntl.flock(lock, fcntl.LOCK_SH)  # (a file system without locks: refused here too)
    except OSError as exc:
        raise unwritable(cache, source, exc.strerror) from None
    with lock:
        seen = _intact(entry, verify)
        if seen:
            try:
                return _session(entry / "model.onnx", _options(threads))
            except Exception as exc:  # damaged in a way the stamp cannot tell: rebuild once
                logger.warning("%s cannot be loaded (%s); rebuilding it", entry, _first(exc))
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = _intact(entry, verify)
        if now is None or now == seen:  # not rebuilt by another worker while we waited
            _build(source, entry, threads)
        return _load(entry / "model.onnx", threads, f"the prepacked copy {entry}", UNSHARED)


def weights_cache_dir(model_dir, configured=""):
    """Where a model directory's prepacked copies live (WEIGHTS_CACHE_DIR, or its default).

    The model directory's own ``.weights-cache`` when it is writable; else (a read-only mount)
    ``$XDG_CACHE_HOME/fillmask`` or ``~/.cache/fillmask``. Outside the model directory each
    model directory gets its own subdirectory, so two of them never prune each other's copies.
    """
    model_dir = Path(model_dir).resolve()
    if not configured and os.access(model_dir, os.W_OK):
        return model_dir / ".weights-cache"
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fillmask"
    digest = hashlib.sha256(str(model_dir).encode()).hexdigest()[:8]
    return Path(configured or home) / f"{model_dir.name}-{digest}"


def weights_key(source):
    """What a prepacked copy depends on: the source file, onnxruntime, our options, the CPU.

    The CPU as its kernels are chosen: /proc/cpuinfo's model and feature flags (x86) or
    implementer/part/features (ARM), and the aux vector's hardware capabilities, which is what
    MLAS reads on ARM (and what qemu reports for the CPU it emulates).
    """
    stat = Path(source).stat()
    info = Path("/proc/cpuinfo")
    text = info.read_text(errors="replace") if info.exists() else ""  # Linux only
    cpu = sorted({ln for ln in text.splitlines() if ln.split(":")[0].strip() in CPU_FIELDS})
    caps = []
    with contextlib.suppress(OSError, AttributeError):  # no getauxval (not glibc): none
        libc = ctypes.CDLL(None)
        libc.getauxval.restype = ctypes.c_ulong
        caps = [libc.getauxval(AT_HWCAP), libc.getauxval(AT_HWCAP2)]
    parts = [stat.st_size, stat.st_mtime_ns, ort.__version__, LAYOUT, platform.machine(), cpu]
    return hashlib.sha256(repr(parts + caps).encode()).hexdigest()[:16]


def _build(source, entry, threads):
    """Write the prepacked copy of ``source`` as ``entry`` (under the exclusive lock)."""
    started = time.perf_counter()
    # Older copies of this file (another version, another CPU, a half-written one) go first.
    for old in entry.parent.glob(glob.escape(source.name) + "-*"):
        shutil.rmtree(old, ignore_errors=True)
    work = entry.with_name(entry.name + ".tmp")
    options = _options(threads)
    options.optimized_model_filepath = str(work / "model.onnx")
    for key, value in (
        ("session.optimized_model_external_initializers_file_name", DATA),
        ("session.optimized_model_external_initializers_min_size_in_bytes", "1024"),
        ("session.save_external_prepacked_constant_initializers", "1"),
    ):
        options.add_session_config_entry(key, value)
    try:
        work.mkdir()
        _session(source, options)  # writes the copy; the session itself is dropped
        stamp = {n: _facts(work / n, True) for n in ("model.onnx", DATA) if (work / n).exists()}
        (work / STAMP).write_text(json.dumps({"source": str(source), "files": stamp}, indent=1))
        for name in [*stamp, STAMP]:  # on disk before the rename makes the copy visible
            with open(work / name, "rb") as handle:
                os.fsync(handle.fileno())
        os.rename(work, entry)
    except Exception as exc:  # OSError, or onnxruntime's Fail when its write fails (full disk)
        shutil.rmtree(work, ignore_errors=True)
        # The source itself may be what fails: then the write is not to blame.
        _load(source, threads)
        free = shutil.disk_usage(entry.parent).free
        raise unwritable(entry.parent, source, f"{_first(exc)}; {free >> 20} MB free") from None
    logger.info(
        "prepacked copy of %s made in %.1f s: %s", source, time.perf_counter() - started, entry
    )


def _intact(entry, verify):
    """The entry's stamp when its files are as they were written, else None."""
    try:
        stamp = json.loads((entry / STAMP).read_text())
        for name, want in stamp["files"].items():
            if not _facts(entry / name, verify == "sha256").items() <= want.items():
                return None
        return stamp
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _facts(path, hashed):
    """What the stamp records of one file: size and mtime, and its sha256 when ``hashed``."""
    stat = path.stat()
    facts = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return {**facts, "sha256": sha256_of(path)} if hashed else facts


def unwritable(cache, source, reason):
    """The one-line refusal when the prepacked copy cannot be written."""
    need = 2 * Path(source).stat().st_size >> 20  # the copy holds the weights plus packed ones
    return ModelFilesError(
        f"cannot keep the shared weights of {source} in {cache} ({reason}): set "
        f"WEIGHTS_CACHE_DIR to a writable directory on disk with about {need} MB free, or "
        "SHARE_WEIGHTS=0 (each worker then holds its own copy)"
    )


def _first(exc):
    """The first line of an exception's text (onnxruntime's run to several)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _load(path, threads, name=None, hint="export the model again"):
    """A session on ``path``, or the one-line refusal when onnxruntime cannot load it."""
    try:
        return _session(path, _options(threads))
    except Exception as exc:  # onnxruntime raises its own types, none documented
        raise ModelFilesError(
            f"onnxruntime cannot load {name or path} ({_first(exc)}); {hint}"
        ) from None


def _options(threads):
    """The session options every session here shares (see ``create_session``)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _session(path, options):
    """Create the session and check it really runs on the CPU provider."""
    session = ort.InferenceSession(
        str(path), options, providers=[CPU], disabled_optimizers=["SkipLayerNormFusion"]
    )
    if CPU not in session.get_providers():
        raise RuntimeError(f"{CPU} unavailable: {session.get_providers()}")
    return session
