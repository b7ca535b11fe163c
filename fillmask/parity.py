"""Parity of the exported graph with PyTorch, and int8 agreement with fp32.

The ONNX side goes through the serving code itself (``Predictor``: tokenizer.json, windowing,
padded batches of different mask counts), so a pass here means the service sees what PyTorch
computes.
"""

from pathlib import Path

import numpy as np

SENTENCES = Path(__file__).with_name("data") / "parity_sentences.txt"
TOP_K = 5
TOLERANCE = 1e-3


def load_sentences(path=SENTENCES):
    """The parity sentences: non-empty lines that are not comments."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def torch_log_probs(model, prepared):
    """PyTorch reference: each sentence alone (no padding), log-softmax at the mask rows."""
    import torch

    out = []
    with torch.no_grad():
        for item in prepared:
            ids = torch.tensor([item.input_ids])
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
            rows = logits[list(item.mask_positions)]
            out.append(torch.log_softmax(rows, dim=-1).numpy())
    return out


def onnx_log_probs(predictor, prepared, batch_size=8):
    """The served graph's rows, run in padded batches as the service runs them."""
    out = []
    for start in range(0, len(prepared), batch_size):
        out.extend(predictor.log_probs(prepared[start : start + batch_size]))
    return out


def ranking(rows, bias, k=TOP_K):
    """Top-k ids of each row after removing excluded tokens, best first."""
    scored = rows + bias
    return np.argsort(-scored, axis=-1, kind="stable")[:, :k]


def compare(reference, candidate, bias, k=TOP_K):
    """Max |Δ log-prob| and top-k identity between two lists of [masks, vocab] arrays.

    The check is the largest difference: with every log-prob within TOLERANCE of PyTorch's, two
    words can only trade places in the top k when PyTorch scores them within 2 × TOLERANCE of
    each other, a near-tie that float noise may break either way (on a random test model, or on a
    real one). ``topk_identical``, the rows whose top k is in exactly PyTorch's order, is recorded
    but does not fail the check.
    """
    ref = np.concatenate(reference)
    got = np.concatenate(candidate)
    identical = np.all(ranking(ref, bias, k) == ranking(got, bias, k), axis=1)
    max_abs_diff = float(np.max(np.abs(ref - got)))
    return {
        "masks": int(len(ref)),
        "max_abs_diff": max_abs_diff,
        "topk": k,
        "topk_identical": int(identical.sum()),
        "passed": bool(max_abs_diff <= TOLERANCE),
    }


def agreement(reference, candidate, bias, k=TOP_K):
    """How often ``candidate`` (int8) ranks like ``reference`` (fp32): top-1 and top-k."""
    ref = ranking(np.concatenate(reference), bias, k)
    got = ranking(np.concatenate(candidate), bias, k)
    top1 = float(np.mean(ref[:, 0] == got[:, 0]))
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref, got, strict=True)]))
    return {
        "masks": int(len(ref)),
        "top1_agreement": round(top1, 4),
        f"top{k}_overlap": round(overlap, 4),
    }
