"""Independent expectations: PyTorch on the tiny model's weights, checked without the service.

Nothing here imports the predictor's top-k, joint or choices code. Rankings are compared
tolerantly: two words whose log-probabilities differ by less than ``TOL`` (the ONNX vs PyTorch
float error) may come in either order, so the checks hold for any seed of the test model.
"""

import numpy as np
import pytest

TOL = 1e-4  # ONNX vs PyTorch log-prob error bound (test_export checks it)


def mask_log_probs(model, tokenizer, text):
    """Log-softmax rows (float64) at the [MASK] positions of ``text``, from one PyTorch run."""
    import torch

    ids = tokenizer(text)["input_ids"]
    positions = [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits[positions], dim=-1).numpy()


def offerable(tokenizer):
    """Bool array over the vocabulary: tokens a candidate may be (the documented rule, restated:
    no [..] specials or [unusedN], no <S>/<T>, no ## pieces, no blank entries)."""
    words = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array(
        [
            bool(w.strip())
            and not (w.startswith("[") and w.endswith("]"))
            and not w.startswith("##")
            and w not in ("<S>", "<T>")
            for w in words
        ]
    )


def assert_top_k(got, row, allowed, k):
    """``got`` [(token_id, score), ...] is a best-first top-``k`` of ``row`` over ``allowed`` ids.

    Checks count, distinct allowed ids, scores = exp(log-prob), order, and that nothing left out
    beats the last one taken by more than the float tolerance.
    """
    ids = [i for i, _ in got]
    scores = [s for _, s in got]
    assert len(ids) == min(k, int(allowed.sum())), ids
    assert len(set(ids)) == len(ids) and all(allowed[i] for i in ids), ids
    assert scores == pytest.approx(np.exp(row[ids]).tolist(), rel=1e-3, abs=1e-7)
    assert all(a >= b - 1e-7 for a, b in zip(scores, scores[1:], strict=False)), scores
    rest = np.where(allowed, row, -np.inf)
    rest[ids] = -np.inf
    assert rest.max() <= row[ids].min() + TOL, "a better word was left out"


def assert_ranked(got, row, ids):
    """``got`` [(token_id, score), ...] ranks exactly ``ids`` best first by ``row``."""
    assert sorted(i for i, _ in got) == sorted(set(ids))
    order = [i for i, _ in got]
    assert [s for _, s in got] == pytest.approx(np.exp(row[order]).tolist(), rel=1e-3, abs=1e-7)
    assert all(row[a] >= row[b] - TOL for a, b in zip(order, order[1:], strict=False))


def pll(model, tokenizer, text, word):
    """Pseudo-log-likelihood of ``word`` written into the blank of ``text`` (its [MASK] run):
    each character masked in turn, log P(character) summed, one PyTorch run per character."""
    import torch

    start = text.index("[MASK]")
    end = text.rindex("[MASK]") + len("[MASK]")
    sentence = text[:start] + word + text[end:]
    enc = tokenizer(sentence, return_offsets_mapping=True)
    ids = enc["input_ids"]
    positions = [
        i
        for i, (a, b) in enumerate(enc["offset_mapping"])
        if b > a and start <= a < start + len(word)
    ]
    assert len(positions) == len(word)
    total = 0.0
    for p in positions:
        masked = list(ids)
        masked[p] = tokenizer.mask_token_id
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([masked])).logits[0, p].double()
        total += float(torch.log_softmax(logits, dim=-1)[ids[p]])
    return total


def onnx_mask_log_probs(onnx_path, tokenizer, text):
    """Log-prob rows at the masks of ``text`` from a plain onnxruntime session on ``onnx_path``
    (no service code), for graphs PyTorch cannot run, such as the int8 one."""
    import onnxruntime as ort

    ids = np.array([tokenizer(text)["input_ids"]], dtype=np.int64)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    (rows,) = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    return rows.astype(np.float64)


def assert_same_ranking(got, want, tol=1e-3):
    """Two best-first lists of (word, score) agree: scores position by position, and words too,
    except that words whose reference scores are within ``tol`` may swap places."""
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=tol)
    for word, score in got:
        near = {w for w, s in want if abs(s - score) <= tol}
        assert word in near, (word, score, want)
