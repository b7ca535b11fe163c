"""The reference design: a full-logits ONNX graph and the seed article's ``predict_mask``.

Kept deliberately as the article wrote it (whole [batch, seq, vocab] logits out of the graph,
first mask only, ``np.exp`` over the whole vocabulary once per candidate), so the benchmark
measures what users of that design actually run. Same onnxruntime session options as ours.
"""

import logging

import numpy as np

from fillmask.session import create_session

logger = logging.getLogger(__name__)


class ReferenceDesign:
    """``predict_mask(text)`` over a full-logits ONNX export of the same weights."""

    name = "reference"

    def __init__(self, onnx_path, source_dir, threads=1):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(source_dir))
        self.onnx_path = onnx_path
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
        return [
            (
                self.tokenizer.decode([int(i)]),
                float(np.exp(mask_logits[i]) / np.sum(np.exp(mask_logits))),
            )
            for i in top
        ]


def compare_graphs(ours_onnx, reference_onnx, threads, tokens=64, reps=40):
    """``session.run`` of our graph vs the full-logits graph, one mask, interleaved.

    Issue 2's check is about the graphs themselves, so tokenisation and postprocessing are left
    out. Returns both medians and the median per-repetition ratio ours ÷ reference.
    """
    import time

    sessions = {
        "ours": create_session(ours_onnx, threads),
        "reference": create_session(reference_onnx, threads),
    }
    ids = np.full((1, tokens), 104, dtype=np.int64)  # any id costs the same; 104 always exists
    ids[0, 0], ids[0, -1], ids[0, tokens // 2] = 101, 102, 103
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    times = {name: [] for name in sessions}
    for rep in range(reps + 3):
        order = list(sessions) if rep % 2 else list(sessions)[::-1]
        for name in order:
            session = sessions[name]
            wanted = {i.name: feeds[i.name] for i in session.get_inputs()}
            time.sleep(0.01)  # let the other session's threads stop spinning
            start = time.perf_counter()
            session.run(None, wanted)
            if rep >= 3:
                times[name].append((time.perf_counter() - start) * 1000)
    ours, ref = np.asarray(times["ours"]), np.asarray(times["reference"])
    return {
        "tokens": tokens,
        "reps": reps,
        "threads": threads,
        "ours_p50_ms": round(float(np.median(ours)), 2),
        "reference_p50_ms": round(float(np.median(ref)), 2),
        "ours_over_reference": round(float(np.median(ours / ref)), 3),
    }
