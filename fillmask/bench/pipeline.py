"""The baseline users start from: transformers ``pipeline("fill-mask")`` on PyTorch (eager CPU)."""

import logging

logger = logging.getLogger(__name__)


class TransformersPipeline:
    """``predict_mask(text)`` through the stock fill-mask pipeline."""

    name = "pipeline"

    def __init__(self, source_dir, threads=1):
        import torch
        from transformers import pipeline

        # Same thread count as onnxruntime's intra-op pool, so the comparison is like for like.
        torch.set_num_threads(threads)
        self.pipe = pipeline("fill-mask", model=str(source_dir), device="cpu")

    def predict_mask(self, text, top_k=5):
        """Top-k (word, probability) for the [MASK] of ``text``."""
        out = self.pipe(text, top_k=top_k)
        if out and isinstance(out[0], list):  # several masks: the pipeline nests; keep the first
            out = out[0]
        return [(o["token_str"].replace(" ", ""), float(o["score"])) for o in out]
