"""The Chinese BERT masked-LM shapes the Pi table covers, with their public configs.

Each is a ``BertForMaskedLM`` with bert-base-chinese's 21,128-token vocabulary; the numbers are
those of the models' ``config.json`` on the Hugging Face hub (layers, hidden, heads, feed-forward).
The benchmark builds RANDOMLY INITIALISED models of these shapes (``fillmask.random_model``):
latency and memory do not depend on the weight values, answers do, so none is ever shown.

    python -m fillmask.bench.shapes            # build and export every shape once (cached)
"""

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

VOCAB = 21128  # bert-base-chinese's vocabulary, shared by every model below
WORK = Path("~/.cache/fillmask-bench")  # bench.py's --work default


@dataclass(frozen=True)
class Shape:
    """One architecture: its name, the public models of that shape, and its sizes."""

    name: str
    models: str  # the public checkpoints with exactly this shape
    layers: int
    hidden: int
    heads: int
    intermediate: int

    def flops_args(self):
        """Keyword arguments of ``flops.bert_flops``."""
        return dict(
            layers=self.layers, hidden=self.hidden, intermediate=self.intermediate, vocab=VOCAB
        )

    def build_args(self):
        """Keyword arguments of ``random_model.build_random_model``."""
        return dict(
            vocab_size=VOCAB,
            hidden_size=self.hidden,
            num_layers=self.layers,
            num_heads=self.heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=512,
        )


SHAPES = (
    Shape(
        "12×768 (base)",
        "google-bert/bert-base-chinese, hfl/chinese-roberta-wwm-ext, hfl/chinese-macbert-base",
        12,
        768,
        12,
        3072,
    ),
    Shape("6×768", "hfl/rbt6", 6, 768, 12, 3072),
    Shape("4×768", "hfl/rbt4", 4, 768, 12, 3072),
    Shape("3×768", "hfl/rbt3", 3, 768, 12, 3072),
    Shape("8×512", "uer/chinese_roberta_L-8_H-512", 8, 512, 8, 2048),
    Shape("4×256", "uer/chinese_roberta_L-4_H-256", 4, 256, 4, 1024),
    Shape("2×128", "uer/chinese_roberta_L-2_H-128", 2, 128, 2, 512),
)
BASE = SHAPES[0]
SMALL = SHAPES[3]  # rbt3: the small model bench.py also compares with the pipeline side by side


def slug(shape):
    """A directory name for ``shape``: ``12x768``."""
    return shape.name.split(" ")[0].replace("×", "x")


def export_shape(shape, work=WORK):
    """The exported model directory of a random model of ``shape`` (built once, cached)."""
    from .models import random_export

    # The base shape shares bench.py's main random model directory: built once, not twice.
    name = "random-bert-base-chinese" if shape == BASE else f"random-{slug(shape)}"
    return random_export(Path(work).expanduser() / name, name, shape.build_args())


def bench_models(shape, work=WORK):
    """``BenchModels`` of a random model of ``shape``: our export, its source, its full logits."""
    from .models import BenchModels, ensure_reference

    model_dir = export_shape(shape, work)
    source = model_dir.parent / "source"
    reference = ensure_reference(source, model_dir.parent / "reference" / "full_logits.onnx")
    return BenchModels(model_dir, source, reference, random_weights=True)


def export_all(shapes=SHAPES, work=WORK):
    """Export every shape; shape → model directory, or the error text when an export failed."""
    import subprocess

    out = {}
    for shape in shapes:
        try:
            out[shape.name] = export_shape(shape, work)
        except subprocess.CalledProcessError as exc:
            # The exporter printed why; the table shows the shapes that worked.
            out[shape.name] = f"export failed (exit {exc.returncode})"
            print(f"{shape.name}: {out[shape.name]}", flush=True)
    return out


def measure_here(model_dirs, threads, reps, tokens):
    """p50 ms of this project's predictor per shape, precision and token count, interleaved.

    ``model_dirs``: shape name → exported directory. Every (shape, precision) is loaded at once
    and timed round-robin (``latency.measure``), so background load hits them alike.
    Returns shape name → precision → tokens → p50 ms.
    """
    import gc

    from fillmask.model_files import PRECISION_FILES

    from .latency import bench_text, measure, summarise
    from .variants import Ours

    variants = {}
    for name, model_dir in model_dirs.items():
        for precision, filename in PRECISION_FILES.items():
            if (Path(model_dir) / filename).is_file():
                variants[f"{name}|{precision}"] = Ours(model_dir, precision, threads)
    texts = {t: bench_text(t) for t in tokens}
    samples = measure(variants, texts, reps)
    out = {}
    for key, per_tokens in samples.items():
        name, precision = key.split("|")
        out.setdefault(name, {})[precision] = {
            t: summarise(values)["p50_ms"] for t, values in per_tokens.items()
        }
    del variants
    gc.collect()
    return out


if __name__ == "__main__":
    for name, result in export_all().items():
        print(name, result)
    sys.exit(0)
