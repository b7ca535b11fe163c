"""The four things compared, each behind the same ``predict_mask(text, top_k)`` call."""

import logging

from fillmask.model_files import PRECISION_FILES, open_model_dir
from fillmask.predictor import Predictor

logger = logging.getLogger(__name__)

VARIANTS = ("pipeline", "reference", "ours-fp32", "ours-int8")
LABELS = {
    "pipeline": "transformers pipeline (PyTorch)",
    "reference": "reference design (full-logits ONNX + numpy)",
    "ours-fp32": "ours, fp32",
    "ours-int8": "ours, int8",
}


def predict(predictor, texts, top_k=5):
    """Every mask of every text filled by ``predictor`` alone (no request validation, no
    ``FillService``): per text, per mask, the ``Candidate`` list."""
    prepared = [predictor.prepare(t, f"texts[{i}]") for i, t in enumerate(texts)]
    rows = predictor.log_probs(prepared)
    return [predictor.candidates(p, r, top_k) for p, r in zip(prepared, rows, strict=True)]


class Ours:
    """This project's predictor (tokenise, one ``session.run``, top-k) at one precision."""

    def __init__(self, model_dir, precision, threads=1, max_length=None):
        self.name = f"ours-{precision}"
        if max_length is None:  # the longest the model allows, so 128-token texts fit whole
            manifest = open_model_dir(model_dir, precision, verify="none").manifest
            max_length = int(manifest.get("max_length", 512))
        self.predictor = Predictor(
            model_dir, precision=precision, max_length=max_length, threads=threads, verify="none"
        )

    def predict_mask(self, text, top_k=5):
        """Top-k (word, probability) for the first [MASK] of ``text``."""
        first = predict(self.predictor, [text], top_k)[0][0]
        return [(c.word, c.score) for c in first]


def load_variant(name, models, threads):
    """Build one variant from ``BenchModels``; ``None`` when its files are not available."""
    if name.startswith("ours-"):
        precision = name.split("-", 1)[1]
        if not (models.model_dir / PRECISION_FILES[precision]).is_file():
            return None  # e.g. exported without --int8
        return Ours(models.model_dir, precision, threads)
    if name == "reference":
        if models.reference_onnx is None:
            return None
        from .reference import ReferenceDesign

        return ReferenceDesign(models.reference_onnx, models.source_dir, threads)
    if name == "pipeline":
        if models.source_dir is None:
            return None
        from .pipeline import TransformersPipeline

        return TransformersPipeline(models.source_dir, threads)
    raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
