"""What the figures depend on: the machine, how busy it was, the library versions."""

import logging
import os
import platform
from pathlib import Path

logger = logging.getLogger(__name__)


def describe():
    """One line describing the CPU, cores, memory and OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory_text = f", {mem_kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        memory_text = ""
    return (
        f"{cpu} ({platform.machine()}), {os.cpu_count()} cores{memory_text}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def load_average():
    """The 1/5/15-minute load averages: how busy the machine was around the run."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions():
    """Library versions the numbers depend on."""
    import onnxruntime
    import torch
    import transformers

    return {
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
