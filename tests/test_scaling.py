"""docs/scaling.md's capacity table: computed from bench.py's results, current, labelled."""

import json
import math
import re
from pathlib import Path

import pytest

from fillmask.bench import scaling

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "bench" / "results.json"
DOC = ROOT / "docs" / "scaling.md"


def block(text, name):
    return re.search(rf"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text, re.S).group(1)


@pytest.mark.parametrize(
    ("target", "host_rps", "hosts"),
    # By hand: ceil(target / (0.7 * host_rps)) + 1 spare.
    [(100, 100, 3), (70, 100, 2), (71, 100, 3), (500, 104.1, 8), (25, 273.3, 2)],
)
def test_hosts_needed(target, host_rps, hosts):
    assert scaling.hosts_needed(target, host_rps) == hosts


def test_doc_table_matches_bench_results():
    """Every configuration's row, recomputed here from results.json with plain arithmetic."""
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    rows = {
        cells[0]: cells[1:]
        for line in block(DOC.read_text(encoding="utf-8"), "capacity").splitlines()
        if line.startswith("| ") and not line.startswith("| configuration")
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == set(results["http"]["servers"])
    for name, by_clients in results["http"]["servers"].items():
        top = str(max(int(c) for c in by_clients))
        rps = by_clients[top]["throughput_rps"]
        expected = [math.ceil(t / (rps * 0.7)) + 1 for t in (25, 50, 100, 200, 500)]
        assert rows[name][0] == f"{rps:g} ({top} clients)"
        assert [int(c) for c in rows[name][2:]] == expected, name


def test_doc_block_is_what_the_command_writes_now():
    results = json.loads(RESULTS.read_text(encoding="utf-8"))
    written = block(DOC.read_text(encoding="utf-8"), "capacity")
    assert written == scaling.capacity_markdown(results, "docs/bench/results.json")
    assert "not measured on a cluster" in written and "not a Raspberry Pi" in written
    if results["meta"]["random_weights"]:
        assert "RANDOMLY INITIALISED" in written


def test_fleet_block_and_marker_replacement():
    fleet = {
        "hosts": 3,
        "clients": 16,
        "requests": 1234,
        "failed": 0,
        "retried_requests": 7,
        "retry_first_status": {"502": 7},
        "answered_by_host": {"killed": 40, "stopped": 30, "survivor": 1164},
        "max_request_ms_around_failure": 300,
        "rejoined_after_s": 2.5,
        "model": "tiny random test model",
        "cores": 2,
        "recorded_at": "2026-01-01T00:00:00Z",
    }
    text = scaling.fleet_markdown(fleet)
    assert "1234 requests, 0 failed" in text and "7 passed on" in text and "40 / 30 / 1164" in text
    doc = "a\n<!-- fleet:begin -->\nold\n<!-- fleet:end -->\nb\n"
    new = scaling.replace_block(doc, "fleet", text)
    assert new.startswith("a\n") and new.endswith("\nb\n") and "\nold\n" not in new
    assert scaling.replace_block(new, "fleet", text) == new
    with pytest.raises(ValueError):
        scaling.replace_block("no markers", "fleet", text)
