"""The models a benchmark compares: ours (fp32, int8), the full-logits reference, the source.

With ``--model DIR`` (an exported model directory, ideally with its ``source/`` next to it) the
real weights are used; otherwise a randomly initialised model of bert-base-chinese's exact
architecture is built once and cached under the work directory, so re-runs start at once.
"""

import hashlib
import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RANDOM_LABEL = (
    "RANDOMLY INITIALISED weights with bert-base-chinese's exact architecture "
    "(12 layers, hidden 768, 12 heads, vocab 21128): timings and memory are "
    "representative, predictions are noise"
)


@dataclass(frozen=True)
class BenchModels:
    """Paths of everything measured, and what the weights are."""

    model_dir: Path  # exported by export_onnx.py (model.onnx, model.int8.onnx)
    source_dir: Path | None  # save_pretrained directory (pipeline + reference need it)
    reference_onnx: Path | None  # full-logits export of the same weights
    random_weights: bool

    @property
    def label(self):
        if self.random_weights:
            return RANDOM_LABEL
        return f"real weights from {self.model_dir}"


def random_models(work):
    """Build (once) the random bert-base-chinese-sized model and every export of it."""
    from fillmask.random_model import bert_base_chinese_architecture

    work = Path(work).expanduser()
    model_dir = random_export(work, "random-bert-base-chinese", bert_base_chinese_architecture())
    reference = ensure_reference(work / "source", work / "reference" / "full_logits.onnx")
    return BenchModels(model_dir, work / "source", reference, random_weights=True)


def random_export(work, name, arch):
    """A random model of ``arch`` (``build_random_model`` arguments) under ``work``, exported.

    The source is built once; the export (fp32 + int8) is redone when the exporter changes.
    """
    from fillmask.random_model import build_random_model

    work = Path(work).expanduser()
    source = work / "source"
    if not (source / "model.safetensors").is_file():
        print(f"building a random {name} in {source} ...", flush=True)
        build_random_model(source, **arch)
    # Keyed by the exporter's source, so a changed exporter is measured, not a stale export.
    model_dir = work / f"model-{exporter_digest()}"
    if not (model_dir / "model.int8.onnx").is_file() or not (model_dir / "manifest.json").is_file():
        print(f"exporting it with export_onnx.py --int8 to {model_dir} ...", flush=True)
        # A child process, so the exporter's peak memory is not charged to the benchmark.
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "export_onnx.py"),
                "--model",
                str(source),
                "--output",
                str(model_dir),
                "--int8",
                "--max-length",
                "512",
                "--name",
                name,
            ],
            check=True,
            cwd=ROOT,
        )
    return model_dir


EXPORTER_FILES = ("export.py", "quantize.py")


def exporter_digest():
    """Short hash of the exporter's code (export_onnx.py, fillmask/export.py and quantize.py)."""
    digest = hashlib.sha256()
    for path in (ROOT / "export_onnx.py", *(ROOT / "fillmask" / f for f in EXPORTER_FILES)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def given_models(model_dir, source_dir, work):
    """Models for ``--model DIR``; the pipeline and reference need the source weights too."""
    model_dir = Path(model_dir)
    source = Path(source_dir) if source_dir else None
    reference = None
    if source is not None:
        reference = ensure_reference(
            source, Path(work).expanduser() / f"reference-{model_dir.name}" / "full_logits.onnx"
        )
    return BenchModels(model_dir, source, reference, random_weights=False)


def ensure_reference(source, path):
    """The reference design's graph: plain ``torch.onnx.export`` of the full logits."""
    path = Path(path)
    if path.is_file():
        return path
    print(f"exporting the full-logits reference graph to {path} ...", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from fillmask.bench.models import "
            "export_full_logits as f; f(sys.argv[1], sys.argv[2])",
            str(source),
            str(path),
        ],
        check=True,
        cwd=ROOT,
    )
    return path


def export_full_logits(source, path):
    """Export ``BertForMaskedLM`` as the seed article does: [batch, seq, vocab] logits out."""
    import torch
    from transformers import BertForMaskedLM

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = BertForMaskedLM.from_pretrained(str(source), attn_implementation="eager").eval()
    ids = torch.tensor([[101, 103, 104, 102]])  # [CLS] [MASK] x [SEP]: in every vocab
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
