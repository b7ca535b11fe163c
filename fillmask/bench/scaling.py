"""The computed figures of docs/scaling.md and the fleet test's figures in docs/reliability.md.

    python -m fillmask.bench.scaling                          # rewrite both blocks
    python -m fillmask.bench.scaling --results pi/results.json --print   # a Pi's bench.py run

Capacity: from a bench.py results.json (its HTTP part: requests/s of one host at the highest
client count), the hosts needed for each target rate with headroom and one spare host. Computed,
not measured on a cluster. Fleet: artefacts/fleet.json, written by tests/test_fleet.py.
"""

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET_RPS = (25, 50, 100, 200, 500)
HEADROOM = 0.7  # plan each host at 70 % of the rate it saturates at: bursts and slower texts
SPARE = 1  # one host more than the load needs: a host may die (tests/test_fleet.py)


def hosts_needed(target_rps, host_rps, headroom=HEADROOM, spare=SPARE):
    """Hosts to serve ``target_rps`` when one host saturates at ``host_rps``."""
    return math.ceil(target_rps / (host_rps * headroom)) + spare


def capacity_rows(results):
    """One row per server configuration of bench.py's HTTP part, at its highest client count."""
    rows = []
    for name, by_clients in results["http"]["servers"].items():
        clients = max(by_clients, key=int)
        cell = by_clients[clients]
        rows.append(
            {
                "configuration": name,
                "clients": int(clients),
                "host_rps": cell["throughput_rps"],
                "cpu_ms": cell["cpu_ms_per_request"],
                "hosts": {t: hosts_needed(t, cell["throughput_rps"]) for t in TARGET_RPS},
            }
        )
    return rows


def capacity_markdown(results, source):
    """The capacity block: what the figures are from, then the table."""
    meta, http = results["meta"], results["http"]
    weights = (
        "a RANDOMLY INITIALISED model with bert-base-chinese's architecture (same speed, "
        "meaningless answers)"
        if meta.get("random_weights")
        else "the real weights"
    )
    head = " | ".join(f"{t} req/s" for t in TARGET_RPS)
    lines = [
        f"*Computed* by `python -m fillmask.bench.scaling` from `{source}` (`{meta['command']}`, "
        f"{meta['date']}), **not measured on a cluster**. One host = the machine bench.py ran "
        f"on: {meta['machine']} — not a Raspberry Pi; {weights}; one Gunicorn with "
        f"{http['config']}, {http['text_tokens']}-token texts. Hosts needed = ceil(target ÷ "
        f"({HEADROOM:.0%} of one host's requests/s)) + {SPARE} spare.",
        "",
        f"| configuration | one host, requests/s | worker CPU per request | {head} |",
        "|---|---|---|" + "---|" * len(TARGET_RPS),
    ]
    for row in capacity_rows(results):
        hosts = " | ".join(str(row["hosts"][t]) for t in TARGET_RPS)
        lines.append(
            f"| {row['configuration']} | {row['host_rps']:g} ({row['clients']} clients) "
            f"| {row['cpu_ms']:g} ms | {hosts} |"
        )
    return "\n".join(lines)


def fleet_markdown(fleet):
    """The fleet test's figures as one table row and a note on where they come from."""
    hosts = fleet["answered_by_host"]
    return "\n".join(
        [
            "| test | what must hold | one run |",
            "|---|---|---|",
            f"| {fleet['hosts']} hosts behind nginx (`deploy/nginx-fleet.conf`), "
            f"{fleet['clients']} clients: `SIGKILL` one host's Gunicorn, `SIGTERM` another's, "
            "then restart the killed one | zero failed requests; the restarted host serves "
            f"again | {fleet['requests']} requests, {fleet['failed']} failed; "
            f"{fleet['retried_requests']} passed on by nginx to another host (first answer "
            f"{_statuses(fleet['retry_first_status'])}); answered by the killed / stopped / "
            f"surviving host {hosts['killed']} / {hosts['stopped']} / {hosts['survivor']}; "
            f"slowest request around the failures {fleet['max_request_ms_around_failure']} ms; "
            f"restarted host serving again {fleet['rejoined_after_s']} s after it was ready |",
            "",
            f"*From `artefacts/fleet.json` of {fleet['recorded_at']} (`python -m pytest "
            "tests/test_fleet.py -m fleet`, root), written here by `python -m "
            f"fillmask.bench.scaling`; {fleet['model']}, all hosts on one {fleet['cores']}-core "
            "machine, so the times say nothing about a real fleet's speed.*",
        ]
    )


def _statuses(counts):
    return ", ".join(f"{n}× {status}" for status, n in sorted(counts.items()))


def replace_block(text, name, block):
    """``text`` with ``block`` between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not (found and found_end):
        raise ValueError(f"markers {begin} ... {end} not found")
    return f"{head}{begin}\n{block}\n{end}{tail}"


def get_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", default=str(ROOT / "docs/bench/results.json"), help="bench.py's output"
    )
    parser.add_argument(
        "--fleet", default=str(ROOT / "artefacts/fleet.json"), help="tests/test_fleet.py's output"
    )
    parser.add_argument("--print", action="store_true", help="print, do not touch the docs")
    return parser.parse_args(argv)


def main(argv=None):
    """Rewrite the capacity block (and the fleet block when its figures exist)."""
    args = get_args(argv)
    source = Path(args.results).resolve()
    results = json.loads(source.read_text(encoding="utf-8"))
    shown = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    blocks = [("docs/scaling.md", "capacity", capacity_markdown(results, shown))]
    fleet = Path(args.fleet)
    if fleet.is_file():
        figures = json.loads(fleet.read_text(encoding="utf-8"))
        blocks.append(("docs/reliability.md", "fleet", fleet_markdown(figures)))
    for doc, name, block in blocks:
        if args.print:
            print(block + "\n")
            continue
        path = ROOT / doc
        path.write_text(replace_block(path.read_text("utf-8"), name, block), encoding="utf-8")
        print(f"wrote the {name} block of {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
