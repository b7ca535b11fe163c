"""The shared-weights memory blocks bench.py writes into the docs (bench/weights_report.py)."""

import shutil
from pathlib import Path

from fillmask.bench import weights_report

ROOT = Path(__file__).resolve().parents[1]


def results(pss_one=550.0, extra=59.0):
    """A results dict of bench.py's shape with made-up, round figures."""
    rows = {n: {"pss_mb": pss_one + (n - 1) * extra, "worker_private_mb": 60.0} for n in (1, 2, 4)}
    steps = [
        {"step": "python interpreter", "added_mb": 4.7},
        {"step": "tokenizer", "added_mb": 4.5},
    ]
    return {
        "meta": {"command": "python bench.py", "date": "d", "machine": "m", "weights": "w"},
        "workers_memory": {
            "load": "8 clients",
            "table": {"fp32, shared": {"workers": rows, "per_extra_worker_mb": extra}},
            "cold_start_s": {"fp32": {"without prepacked copy": 4.0, "with prepacked copy": 1.2}},
            "copy_mb": {"fp32": 816},
            "latency": {
                "fp32": {
                    16: {
                        "exported file ms": 40.0,
                        "shared copy ms": 39.0,
                        "ratio": 0.98,
                        "prepacking off ms": 70.0,
                        "ratio prepacking off": 1.75,
                    }
                }
            },
            "itemised": {"fp32": steps},
        },
    }


def test_workers_that_fit_is_the_first_worker_plus_whole_extra_ones():
    row = results()["workers_memory"]["table"]["fp32, shared"]
    # 3200 MB: 550 for the first worker, then 2650 // 59 = 44 more.
    assert weights_report.workers_that_fit(row, 3200) == 45
    assert weights_report.workers_that_fit(row, 549) == 0


def test_the_blocks_carry_this_runs_figures_and_its_command(tmp_path):
    for doc in ("docs/performance.md", "docs/raspberry-pi.md"):
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / doc, tmp_path / doc)  # the real docs: their markers must be there
    weights_report.write_docs(results(), root=tmp_path)
    perf = (tmp_path / "docs/performance.md").read_text(encoding="utf-8")
    pi = (tmp_path / "docs/raspberry-pi.md").read_text(encoding="utf-8")
    assert "**+59 MB**" in perf and "fp32 816 MB" in perf and "`python bench.py`" in perf
    assert "| fp32, shared | 550 MB | +59 MB | 45 |" in pi and "ESTIMATED" in pi
    # Writing twice replaces the block instead of adding a second one.
    weights_report.write_docs(results(extra=70.0), root=tmp_path)
    again = (tmp_path / "docs/performance.md").read_text(encoding="utf-8")
    assert "**+70 MB**" in again and "**+59 MB**" not in again
