"""The reference design: a full-logits ONNX graph and the seed article's ``predict_mask``.

Kept deliberately as the article wrote it (whole [batch, seq, vocab] logits out of the graph,
first mask only, ``np.exp`` over the whole vocabulary once per candidate), so the benchmark
measures what users of that design actually run. Same onnxruntime session options as ours.
"""

import logging

import numpy as np

from fillmask.predictor import create_session

logger = logging.getLogger(__name__)


class ReferenceDesign:
    """``predict_mask(text)`` over a full-logits ONNX export of the same weights."""

    name = "reference"

    def __init__(self, onnx_path, source_dir, threads=1):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(source_dir))
        self.session = create_session(onnx_path, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def predict_mask(self, text, top_k=5):
        """Top-k (word, probability) for the first [MASK] of ``text``."""
        inputs = self.tokenizer(text, return_tensors="np")
        feeds = {name: inputs[name].astype(np.int64) for name in self.input_names}
        logits = self.session.run(None, feeds)[0]
        mask_index = np.where(inputs["input_ids"][0] == self.tokenizer.mask_token_id)[0][0]
        mask_logits = logits[0, mask_index]
        top = np.argsort(mask_logits)[-top_k:][::-1]
        return [(self.tokenizer.decode([int(i)]),
                 float(np.exp(mask_logits[i]) / np.sum(np.exp(mask_logits))))
                for i in top]
