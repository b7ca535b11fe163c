"""Side by side: pipeline, reference design and ours, for bert-base and for a small model.

Both models' variants are loaded at once and timed in one round-robin (``latency.measure``), so
the small model's speed-up over bert-base is a ratio of runs made back to back, not of two runs
made at different times on a shared machine.
"""

import gc
import logging

from . import latency
from .reference import compare_graphs
from .variants import LABELS, VARIANTS, load_variant

logger = logging.getLogger(__name__)

SMALL = "small:"  # prefix of the small model's variants inside one interleaved measurement


def summaries(samples):
    """Per variant: summaries per token count, ratios to the pipeline, ours ÷ reference."""
    result = {
        "summary": {
            name: {t: latency.summarise(v) for t, v in per.items()} for name, per in samples.items()
        },
        "ratios_to_pipeline": {},
        "ours_fp32_vs_reference": {},
    }
    if "pipeline" in samples:
        result["ratios_to_pipeline"] = latency.pairwise_ratios(samples, "pipeline")
    if "reference" in samples and "ours-fp32" in samples:
        # ours ÷ reference, pair by pair (below 1 = ours faster).
        inverse = latency.pairwise_ratios(
            {"ref": samples["ours-fp32"], "ours": samples["reference"]}, "ref"
        )
        result["ours_fp32_vs_reference"] = inverse["ours"]
    return result


def split(samples):
    """(bert-base's samples, the small model's samples) from one measurement."""
    base = {k: v for k, v in samples.items() if not k.startswith(SMALL)}
    small = {k[len(SMALL) :]: v for k, v in samples.items() if k.startswith(SMALL)}
    return base, small


def speedups(base, small):
    """bert-base time ÷ small-model time, repetition by repetition, per variant and tokens."""
    return {
        name: latency.pairwise_ratios({"base": base[name], "small": small[name]}, "base")["small"]
        for name in small
        if name in base
    }


def run(bench_models, small, threads, reps, tokens, quick=False):
    """Interleaved single-request latency of every variant of both models.

    ``small``: ``(Shape, BenchModels)`` of the small model, or None to measure bert-base alone.
    """
    sets = {"": bench_models}
    if small is not None:
        sets[SMALL] = small[1]
    variants = {}
    for prefix, models in sets.items():
        for name in VARIANTS:
            variant = load_variant(name, models, threads)
            if variant is not None:
                variants[prefix + name] = variant
    texts = {t: latency.bench_text(t) for t in tokens}
    base_variants, small_variants = split(variants)
    agreement = latency.top1_agreement(base_variants, texts)
    samples = latency.measure(variants, texts, reps)
    base, small_samples = split(samples)
    result = {"texts": texts, "agreement": agreement, "reps": reps, **summaries(base)}
    if small is not None:
        shape = small[0]
        result["small"] = {
            "shape": shape.name,
            "models": shape.models,
            "random_weights": small[1].random_weights,
            "agreement": latency.top1_agreement(small_variants, texts),
            **summaries(small_samples),
            "speedup_over_base": speedups(base, small_samples),
        }
    del variants, base_variants, small_variants
    gc.collect()
    if bench_models.reference_onnx:
        result["graphs_at_64_tokens"] = compare_graphs(
            bench_models.model_dir / "model.onnx",
            bench_models.reference_onnx,
            threads,
            reps=30 if quick else 100,
        )
    return result


def small_markdown(lat, tokens):
    """The small model's rows, measured in the same round-robin as bert-base's."""
    small = lat.get("small")
    if not small:
        return []
    weights = "RANDOMLY INITIALISED weights, " if small.get("random_weights") else ""
    lines = [
        "",
        f"Small model in the same run, interleaved with the rows above: {small['shape']} "
        f"({weights}the shape of {small['models']}).",
        "",
        f"| {small['shape']}, 1 mask | "
        + " | ".join(f"{t} tok p50" for t in tokens)
        + " | speed-up vs its pipeline | speed-up over bert-base's shape, same variant |",
        "|---|" + "---|" * (len(tokens) + 2),
    ]
    for variant, per in small["summary"].items():
        ratio = small["ratios_to_pipeline"].get(variant)
        over = small["speedup_over_base"].get(variant)
        lines.append(
            f"| {LABELS.get(variant, variant)} | "
            + " | ".join(f"{per[t]['p50_ms']:.1f} ms" for t in tokens)
            + " | "
            + (" / ".join(f"{ratio[t]:.2f}×" for t in tokens) if ratio else "1 (baseline)")
            + " | "
            + (" / ".join(f"{over[t]:.2f}×" for t in tokens) if over else "not measured")
            + " |"
        )
    lines += [
        "",
        "Speed-up over bert-base's shape: median of per-repetition ratios (bert-base's time ÷ "
        "the small model's, same variant, back to back).",
    ]
    return lines
