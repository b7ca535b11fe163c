"""The shared-weights memory blocks of docs/performance.md and docs/raspberry-pi.md.

    python -m fillmask.bench.weights_report --measure --quick   # measure only this part (~6 min)
    python -m fillmask.bench.weights_report            # rewrite both from docs/bench/results.json
    python -m fillmask.bench.weights_report --print    # print them

bench.py measures and writes them too when it writes to docs/bench (its default), so they only
ever hold one run's figures (``results["workers_memory"]``, made by
``fillmask.bench.workers_memory``). ``--measure`` runs that part alone on bench.py's random
model of bert-base-chinese's shape (or ``--model DIR``) and keeps its figures in
docs/bench/workers_memory.json.
"""

import argparse
import json
import sys
from pathlib import Path

from .scaling import replace_block

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "weights-memory"
PI_BLOCK = "pi-workers"
# A 4 GB Pi 4B running Raspberry Pi OS Lite: ~3.7 GB free after boot (the OS ~0.2 GB, the GPU's
# default share and the kernel the rest); 0.5 GB of it is left for the page cache and the rest.
PI_MB = 3200


def _source(results):
    meta = results["meta"]
    load = [meta.get("load_average_before"), meta.get("load_average_after")]
    busy = f", load average {load[0]} before, {load[1]} after" if all(load) else ""
    return (
        f"*`{meta['command']}`, {meta['date']}, {meta['machine']}{busy}; {meta['weights']}. "
        "Memory does not depend on the weight values; timings do on how busy the cores were.*"
    )


def markdown(results):
    """The full table: summed PSS and per-worker private memory, cold start, what a worker holds."""
    mem = results["workers_memory"]
    lines = [
        "Summed PSS of the Gunicorn master and its workers (`/proc/PID/smaps_rollup`) and each "
        f"worker's private memory, after every worker answered requests ({mem['load']}). "
        "*Per-worker copies* is `SHARE_WEIGHTS=0` (each worker's session holds its weights on "
        "its heap, as before issue 19); *shared* is the default.",
        "",
        "| model, weights | 1 worker: PSS / private | 2 workers | 4 workers "
        "| each worker beyond the first |",
        "|---|---|---|---|---|",
    ]
    for name, row in mem["table"].items():
        cells = " | ".join(
            f"{w['pss_mb']:,.0f} / {w['worker_private_mb']:,.0f} MB"
            for w in (row["workers"].get(n, row["workers"].get(str(n))) for n in (1, 2, 4))
        )
        lines.append(f"| {name} | {cells} | **+{row['per_extra_worker_mb']:,.0f} MB** |")
    lines += [
        "",
        "With one worker its private memory includes the mapped weights (no other process maps "
        "them); with more, the mapped pages are shared and each worker's PSS holds 1/N of them.",
        "",
        "| cold start, 1 worker, launch → first answer | "
        + " | ".join(next(iter(mem["cold_start_s"].values())))
        + " |",
        "|---|---|---|",
    ]
    for precision, row in mem["cold_start_s"].items():
        lines.append(f"| {precision} | " + " | ".join(f"{v:g} s" for v in row.values()) + " |")
    sizes = ", ".join(f"{p} {mb:,} MB" for p, mb in mem.get("copy_mb", {}).items())
    lines += ["", f"The prepacked copy on disk: {sizes} (the weights and their packed form)."]
    lines += [
        "",
        "One run (batch of 1) with the shared copy ÷ one run with the exported file, same "
        "process, round-robin, median of per-round ratios (below 1: the shared copy is faster); "
        "and with prepacking off (`session.disable_prepacking`), the other way to share pages:",
        "",
        "| precision | tokens | exported file | shared copy | ratio | prepacking off | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for precision, per in mem["latency"].items():
        for tokens, row in per.items():
            lines.append(
                f"| {precision} | {tokens} | {row['exported file ms']:g} ms "
                f"| {row['shared copy ms']:g} ms | **{row['ratio']:.3f}** "
                f"| {row['prepacking off ms']:g} ms | {row['ratio prepacking off']:.3f} |"
            )
    lines += ["", "What one worker holds, step by step (one fresh process, private memory):", ""]
    per = mem["itemised"]
    lines += ["| step | " + " | ".join(per) + " |", "|---|" + "---|" * len(per)]
    for i, first in enumerate(next(iter(per.values()))):
        added = " | ".join(f"+{rows[i]['added_mb']:g} MB" for rows in per.values())
        lines.append(f"| {first['step']} | {added} |")
    lines += [
        "",
        "The session step is almost all mapped weights (private only while one process maps "
        "them); the rest of a worker is the interpreter and its imports, the tokenizer, and "
        "onnxruntime's activation arena, which grows to the largest micro-batch the worker ran.",
        "",
        _source(results),
    ]
    return "\n".join(lines)


def workers_that_fit(row, memory_mb=PI_MB):
    """Workers whose summed PSS stays within ``memory_mb``: first worker + extra ones."""
    one = row["workers"].get(1, row["workers"].get("1"))["pss_mb"]
    return max(0, 1 + int((memory_mb - one) // max(row["per_extra_worker_mb"], 1)))


def pi_markdown(results):
    """How many workers fit a 4 GB Pi, ESTIMATED from this run's x86 figures."""
    mem = results["workers_memory"]
    lines = [
        f"ESTIMATED from the x86-64 figures of [performance.md](performance.md#memory) with "
        f"{PI_MB / 1000:.1f} GB for the service (a 4 GB Pi 4B with Raspberry Pi OS Lite, 0.5 GB "
        "left for the page cache); the packed layout on the Pi's NEON kernels is of about the "
        "same size, but this was not measured on a Pi.",
        "",
        "| model, weights | summed PSS, 1 worker | each extra worker | workers that fit in "
        f"{PI_MB / 1000:.1f} GB |",
        "|---|---|---|---|",
    ]
    for name, row in mem["table"].items():
        one = row["workers"].get(1, row["workers"].get("1"))["pss_mb"]
        lines.append(
            f"| {name} | {one:,.0f} MB | +{row['per_extra_worker_mb']:,.0f} MB "
            f"| {workers_that_fit(row)} |"
        )
    lines += ["", _source(results)]
    return "\n".join(lines)


def write_docs(results, root=ROOT):
    """Rewrite both blocks from ``results``."""
    for doc, name, text in (
        ("docs/performance.md", BLOCK, markdown(results)),
        ("docs/raspberry-pi.md", PI_BLOCK, pi_markdown(results)),
    ):
        path = Path(root) / doc
        path.write_text(replace_block(path.read_text(encoding="utf-8"), name, text), "utf-8")


def measure(args):
    """Run bench.py's memory part alone; the results in bench.py's shape."""
    from datetime import UTC, datetime

    from fillmask.random_model import bert_base_chinese_architecture

    from . import machine, models, workers_memory
    from .models import RANDOM_LABEL

    work = Path(args.work).expanduser()
    if args.model:
        model_dir, label = Path(args.model), f"real weights from {args.model}"
    else:
        arch = bert_base_chinese_architecture()
        name = "random-bert-base-chinese"
        model_dir, label = models.random_export(work / name, name, arch), RANDOM_LABEL
    command = "python -m fillmask.bench.weights_report --measure" + " --quick" * args.quick
    meta = {
        "command": command + (f" --model {args.model}" if args.model else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(),
        "weights": label,
        "load_average_before": machine.load_average(),
    }
    results = {"meta": meta, "workers_memory": workers_memory.run(model_dir, work, args.quick)}
    meta["load_average_after"] = machine.load_average()
    Path(args.results).write_text(json.dumps(results, indent=1, ensure_ascii=False), "utf-8")
    return results


def main(argv=None):
    """Measure (``--measure``) or read the figures; rewrite (or print) the blocks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results",
        help="default: docs/bench/results.json, or with --measure "
        "docs/bench/workers_memory.json (written)",
    )
    parser.add_argument("--print", action="store_true", help="print, do not touch the docs")
    parser.add_argument("--measure", action="store_true", help="run the measurement first")
    parser.add_argument("--quick", action="store_true", help="with --measure: fewer repetitions")
    parser.add_argument("--model", help="with --measure: an exported model directory")
    parser.add_argument("--work", default="~/.cache/fillmask-bench", help="bench.py's --work")
    args = parser.parse_args(argv)
    name = "workers_memory.json" if args.measure else "results.json"
    args.results = args.results or str(ROOT / "docs" / "bench" / name)
    if args.measure:
        results = measure(args)
    else:
        results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    if "workers_memory" not in results:
        sys.exit(f"{args.results} has no workers_memory part (bench.py --skip memory?)")
    if args.print:
        print(markdown(results), "\n\n", pi_markdown(results))
    else:
        write_docs(results)


if __name__ == "__main__":
    main()
