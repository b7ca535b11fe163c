"""The Pi estimate block of docs/raspberry-pi.md, written from bench.py's results.json.

    python -m fillmask.bench.pi_report            # rewrite the block from docs/bench/results.json
    python -m fillmask.bench.pi_report --print    # print it

bench.py rewrites the block itself when it writes to docs/bench (its default), so the table can
only ever be one run's figures. Every Pi figure in it is ESTIMATED, NOT MEASURED.
"""

import argparse
import json
import sys
from pathlib import Path

from .pi_uses import recommendations
from .scaling import replace_block

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "raspberry-pi.md"
BLOCK = "pi-estimate"


def _cells(per_tokens, tokens, fmt="{:g}"):
    """'a / b / c' over the token counts (JSON turns int keys into strings); '–' if missing."""
    values = [per_tokens.get(t, per_tokens.get(str(t))) for t in tokens]
    return " / ".join("–" if v is None else fmt.format(v) for v in values)


def validation_text(validation, combine):
    """One paragraph: the method against the published Pi 4 latencies, with the errors."""
    other = "max" if combine == "sum" else "sum"
    parts, errors = [], {combine: {}, other: {}}
    for row in validation["rows"]:
        at = {int(k): v for k, v in row["by_tokens"].items()}
        cells = ", ".join(
            f"{t} tokens {at[t][combine]['ms']:g} ms ({at[t][combine]['error']:+.0%})" for t in at
        )
        parts.append(f"{row['model']}: measured {row['measured_ms']:g} ms; estimated {cells}")
        for how in errors:
            for t, cell in at.items():
                errors[how].setdefault(t, []).append(cell[how]["error"])
    at32 = errors[combine][32]
    spread = [e for per in errors[combine].values() for e in per]
    factor = max(1 + max(spread), 1 / (1 + min(spread)))
    return (
        "**Check of the method** against published ONNX Runtime latencies on a Pi 4 "
        f"({validation['source']}), same formula, same rates, encoder only: "
        + "; ".join(parts)
        + f". At 32 tokens (a short sentence) the error is {min(at32):+.0%} to {max(at32):+.0%}"
        f" with the {combine} of the two terms, {min(errors[other][32]):+.0%} to "
        f"{max(errors[other][32]):+.0%} with their {other}. The source gives no token count; "
        f"over 16-64 tokens the error spans {min(spread):+.0%} to {max(spread):+.0%}. So read "
        f"the estimates as good to a factor of about {factor:.1f}: enough to rank models and "
        "to tell 50 ms from 500 ms, not to promise a number."
    )


def here_text(check):
    """The same formula on this machine, with its own rates measured in the same run."""
    if not check:
        return []
    rates = check["rates"]
    return [
        f"The same formula with this machine's own rates, measured in the same run "
        f"(onnxruntime MatMul peak {rates['fp32_gflops']:g} GFLOP/s, a weight streamed at "
        f"{rates['gbps']:g} GB/s), against the fp32 column measured here: measured ÷ "
        f"estimated {check['median']:g} at the median, {check['min']:g} to {check['max']:g} "
        f"over {check['n']} cells (tokenising and dispatch included in the measurement, as on "
        "a Pi).",
        "",
    ]


def markdown(results):
    """The block: provenance, formula and cited rates, the table, the check, the caveats."""
    pi, meta = results["pi"], results["meta"]
    tokens = pi["tokens"]
    boards = pi["boards"]
    toks = " / ".join(str(t) for t in tokens)
    lines = [
        f"*From `{meta['command']}` of {meta['date']} (`docs/bench/results.json`). "
        "Models: RANDOMLY INITIALISED weights of each public model's exact shape "
        "(`fillmask/random_model.py`, vocabulary 21,128), exported by `export_onnx.py --int8`: "
        "time does not depend on the weight values, answers do, so none is shown.* "
        f'**Pi columns: estimated, not measured.** "Here": measured on {meta["machine"]} '
        f"with {pi['threads_here']} threads, median of {pi['reps']} interleaved runs, one "
        "`[MASK]`, through this project's predictor.",
        "",
        f"| shape (public models) | precision | weights read per run | GFLOP per request "
        f"({toks} tokens) | measured here, ms | **Pi 4B estimated**, ms | "
        f"**Pi 5 estimated**, ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in pi["rows"]:
        cells = [
            f"{row['shape']} ({row['models']})",
            row["precision"],
            f"{row['weight_mb']:.0f} MB",
            _cells(row["gflop"], tokens, "{:.2f}"),
            _cells(row["here_ms"], tokens, "{:.1f}"),
            _cells(row["pi4_ms"], tokens, "{:.0f}"),
            _cells(row["pi5_ms"], tokens, "{:.0f}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if pi.get("export_failed"):
        failed = ", ".join(f"{k} ({v})" for k, v in pi["export_failed"].items())
        lines += ["", f"Not in the table, the export failed: {failed}."]
    lines += [
        "",
        "**How the estimate is made**: estimated ms = GFLOP ÷ the board's sustained fp32 GEMM "
        "rate + weight bytes ÷ its memory bandwidth. GFLOP counts the matrix products "
        "(`fillmask/bench/flops.py`: 2 per multiply-add; the MLM head's vocabulary projection "
        "only for the masked row, as our graph runs it); weight bytes are counted from each "
        "exported ONNX graph (`fillmask/bench/pi_estimate.py`: every initializer a run reads "
        "whole, embedding tables excluded since only their tokens' rows are read). The two "
        "terms are added, not overlapped: at one request every weight matrix meets only 16-64 "
        "rows, so the weights stream from DRAM (1 MB of L2 holds none of them) with little "
        "arithmetic per byte to hide it behind.",
        "",
    ]
    for key in ("pi4", "pi5"):
        board = boards[key]
        lines.append(
            f"- **{board['name']}**: fp32 {board['fp32_gflops']:.1f} GFLOP/s, int8 "
            f"{board['int8_gflops']:.1f} GFLOP/s, memory {board['gbps']:.2f} GB/s. Sources: "
            + "; ".join(board["sources"])
            + "."
        )
    lines += [
        "",
        "int8 on the Pi 4: the Cortex-A72 has no int8 dot-product instructions (`asimddp`), "
        "which onnxruntime's fast ARM int8 kernels use, so int8 is taken as no faster at "
        "arithmetic than fp32: it saves memory traffic, not arithmetic (estimated with the "
        "fp32 rate and the int8 graph's bytes). The Pi 5's Cortex-A76 has them (estimated at "
        "1.5 × its fp32 rate).",
        "",
        validation_text(pi["validation"], pi["combine"]),
        "",
        *here_text(pi.get("here_check")),
        *recommendations(pi),
        "",
        "Not in the estimate: tokenising, `session.run` dispatch and the HTTP round trip"
        + _service_cost(results)
        + ", which is what the two smallest shapes mostly spend; a Pi core is slower at them "
        "too. The rates are all four cores for one request (`WORKERS=1 ORT_THREADS=4`); with "
        "the default two workers of two threads a lone request has half the arithmetic rate.",
    ]
    return "\n".join(lines)


def _service_cost(results):
    """' (… measured by bench.py on this machine: …)' from the service-cost part, if it ran."""
    per = results.get("service_cost", {}).get("per_request", {}).get("fp32", {})
    cell = per.get(16) or per.get("16")
    if not cell:
        return ""
    return (
        f" (the service's own cost, HTTP minus in process, measured by bench.py on this machine: "
        f"{cell['service_cost_ms']:g} ms at 16 tokens, fp32)"
    )


def write_doc(results, doc=DOC):
    """Rewrite the block in ``doc`` from ``results``."""
    path = Path(doc)
    path.write_text(replace_block(path.read_text("utf-8"), BLOCK, markdown(results)), "utf-8")


def main(argv=None):
    """Rewrite (or print) the block from a results.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "docs/bench/results.json"))
    parser.add_argument("--print", action="store_true", help="print, do not touch the docs")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text(encoding="utf-8"))
    if args.print:
        print(markdown(results))
    else:
        write_doc(results)
        print(f"wrote the {BLOCK} block of {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
