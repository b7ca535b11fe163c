"""The onnxruntime session of one model file: options, providers, and the process's malloc policy.

One explicit ``create_session`` for the predictor, the benchmark and the exporter's checks.
"""

import ctypes

import onnxruntime as ort

M_MMAP_THRESHOLD = -3  # mallopt() parameter number in glibc's malloc.h


def return_freed_memory():
    """Make glibc hand large freed blocks back to the OS at once (fixed 64 KiB mmap threshold).

    Loading a model parses the whole ONNX file and copies every weight out of it; with glibc's
    default (a threshold that grows as big blocks are freed) the parsed copy stayed in the heap,
    measured +30 MB per fp32 worker and +90 MB per int8 one, for nothing. A process-wide policy,
    so the worker sets it (``app.load_predictor``), not ``create_session``: in a process that
    also runs PyTorch (bench.py) it made PyTorch's allocations page-fault, 6-17 % slower.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): nothing to tune


def create_session(path, threads=1):
    """An ``InferenceSession`` on the CPU with explicit, measured options.

    Sequential execution with ``threads`` intra-op threads: the parallel executor measured 2x
    slower for BERT's chain of ops, and inter-op threads would only compete with intra-op ones.
    SkipLayerNormalization fusion stays off: its kernel measured slower than Add +
    LayerNormalization (see ``fillmask.export.fusion_options``). Pool threads sleep instead of
    spinning between operators: with 2 threads on a 2-core machine shared with other work a run
    measured 15-30 % faster (spinning threads steal the cores the busy ones need); with 1 thread
    (no pool) it changes nothing.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=["SkipLayerNormFusion"],
    )
    if "CPUExecutionProvider" not in session.get_providers():
        raise RuntimeError(f"CPUExecutionProvider unavailable: {session.get_providers()}")
    return session
