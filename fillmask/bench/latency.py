"""Single-request latency, with the variants interleaved so background load hits all alike."""

import logging
import time

import numpy as np

logger = logging.getLogger(__name__)

# Characters every Chinese BERT vocabulary holds as single tokens (and the random model's too).
FILLER = "床前明月光疑是地上霜举头望明月低头思故乡春眠不觉晓处处闻啼鸟夜来风雨声花落知多少"


def bench_text(tokens):
    """A text that the model sees as exactly ``tokens`` ids ([CLS] + [SEP] included), one mask."""
    if tokens < 3:
        raise ValueError("a text needs at least 3 tokens: [CLS], [MASK], [SEP]")
    body = (FILLER * (tokens // len(FILLER) + 1))[: tokens - 3]
    middle = len(body) // 2
    return body[:middle] + "[MASK]" + body[middle:]


def summarise(values_ms):
    """Median, p95, mean and count of a list of milliseconds."""
    values = np.asarray(values_ms, dtype=float)
    return {
        "p50_ms": round(float(np.median(values)), 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "mean_ms": round(float(values.mean()), 2),
        "n": int(values.size),
    }


def measure(variants, texts, reps, warmup=3, pause=0.02):
    """Time ``predict_mask`` of every variant on every text, round-robin.

    ``variants``: name → object with ``predict_mask(text)``; ``texts``: tokens → text. Each
    repetition visits every (tokens, variant) pair once, starting from a different variant each
    time so no variant always runs right after the same neighbour. Returns name → tokens → [ms].
    """
    names = list(variants)
    samples = {name: {tokens: [] for tokens in texts} for name in names}
    for rep in range(warmup + reps):
        shift = rep % len(names)
        order = names[shift:] + names[:shift]
        for tokens, text in texts.items():
            for name in order:
                time.sleep(pause)
                start = time.perf_counter()
                variants[name].predict_mask(text)
                elapsed = (time.perf_counter() - start) * 1000
                if rep >= warmup:
                    samples[name][tokens].append(elapsed)
    return samples


def pairwise_ratios(samples, base):
    """``base`` time ÷ each variant's time, repetition by repetition; median of those ratios."""
    out = {}
    for name, per_tokens in samples.items():
        if name == base:
            continue
        out[name] = {}
        for tokens, values in per_tokens.items():
            ratios = np.asarray(samples[base][tokens]) / np.asarray(values)
            out[name][tokens] = round(float(np.median(ratios)), 2)
    return out


def top1_agreement(variants, texts):
    """The word each variant puts first, and whether the fp32 ones agree (same weights).

    int8 is left out of the verdict: quantisation may legitimately reorder close candidates.
    """
    result = {}
    for tokens, text in texts.items():
        firsts = {name: v.predict_mask(text)[0][0] for name, v in variants.items()}
        fp32 = {word for name, word in firsts.items() if not name.endswith("int8")}
        result[tokens] = {"first_words": firsts, "fp32_agree": len(fp32) == 1}
    return result
