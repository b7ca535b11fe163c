"""bench.py's PNG chart: single-request latency per variant, HTTP throughput per client count."""

import logging

from .variants import LABELS

logger = logging.getLogger(__name__)


def draw(results, path):
    """Two panels: single-request latency per variant, HTTP throughput per client count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    http = results.get("http")
    fig, axes = plt.subplots(1, 2 if http else 1, figsize=(12 if http else 7, 4.5), squeeze=False)
    ax = axes[0][0]
    summary = results["latency"]["summary"]
    tokens = sorted(int(t) for t in next(iter(summary.values())))
    width = 0.8 / len(summary)
    for i, (variant, per) in enumerate(summary.items()):
        p50 = [per[t]["p50_ms"] for t in tokens]
        p95 = [per[t]["p95_ms"] for t in tokens]
        x = np.arange(len(tokens)) + i * width
        ax.bar(x, p50, width, label=LABELS.get(variant, variant))
        ax.errorbar(
            x,
            p50,
            yerr=[[0] * len(p50), np.subtract(p95, p50)],
            fmt="none",
            ecolor="black",
            capsize=2,
            linewidth=0.8,
        )
    ax.set_xticks(np.arange(len(tokens)) + width * (len(summary) - 1) / 2)
    ax.set_xticklabels([f"{t} tokens" for t in tokens])
    ax.set_yscale("log")  # the pipeline's p95 would otherwise flatten every other bar
    ax.set_ylabel("ms per request, log scale (bar p50, whisker p95)")
    ax.set_title("Single request, one [MASK]")
    ax.legend(fontsize=8)
    if http:
        ax = axes[0][1]
        for name, per in http["servers"].items():
            clients = [int(c) for c in per]
            ax.plot(clients, [per[c]["throughput_rps"] for c in per], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xticks(clients)
        ax.set_xticklabels([str(c) for c in clients])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("requests per second")
        ax.set_title(f"Gunicorn on loopback, {http['text_tokens']}-token texts")
        ax.legend(fontsize=8)
    weights = (
        "RANDOMLY INITIALISED weights" if results["meta"]["random_weights"] else "real weights"
    )
    fig.suptitle(
        f"bert-base-chinese architecture, {weights} — {results['meta']['machine']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
