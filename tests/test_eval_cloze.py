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
