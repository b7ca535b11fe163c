"""Text preparation and configuration: pure functions, exact expectations."""

import pytest

from fillmask.config import Config
from fillmask.errors import FillMaskError, ModelFilesError
from fillmask.text import find_masks


def test_find_masks_all_spellings():
    text = "a[MASK]b[mask]c［MASK］d［mask]e[ MASK ]"
    assert [text[s:e] for s, e in find_masks(text)] == [
        "[MASK]",
        "[mask]",
        "［MASK］",
        "［mask]",
        "[ MASK ]",
    ]


def test_prepare_ids_and_positions(predictor):
    item = predictor.prepare("天[MASK]气［MASK］")
    assert item.input_ids[0] == 101 and item.input_ids[-1] == 102
    assert [item.input_ids[p] for p in item.mask_positions] == [103, 103]
    assert item.mask_positions == (2, 4)
    assert item.fill(["x", None]) == "天x气［MASK］"
    assert item.fill_one(1, "好") == "天[MASK]气好"


def test_mask_inside_words_and_at_edges(predictor):
    item = predictor.prepare("[MASK]abc[MASK]def[MASK]")
    assert item.num_masks == 3
    assert item.input_ids[1] == 103 and item.input_ids[-2] == 103


def test_surrogates_and_controls_do_not_break_tokenisation(predictor):
    item = predictor.prepare("\ud800好\x00[MASK]\u202e😀")
    assert item.num_masks == 1
    assert item.fill_one(0, "坏") == "\ud800好\x00坏\u202e😀"


@pytest.mark.parametrize(
    "text,code",
    [
        ("", "empty_text"),
        ("  \n", "empty_text"),
        ("没有", "no_mask"),
        ("[MASK]" * 17, "too_many_masks"),
        (5, "invalid_type"),
    ],
)
def test_prepare_refuses(predictor, text, code):
    with pytest.raises(FillMaskError) as info:
        predictor.prepare(text)
    assert info.value.code == code and info.value.status == 400


def _vocab_ids(tiny_model_dir):
    """token -> id straight from the model's vocab.txt (one token per line)."""
    lines = (tiny_model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return {token: i for i, token in enumerate(lines)}


def test_window_keeps_masks_and_limits_length(predictor, tiny_model_dir):
    """Masks near the start: the window is the text's first max_length-2 tokens."""
    ids = _vocab_ids(tiny_model_dir)
    one, two, three, mask = (ids.get(c, ids["[UNK]"]) for c in ("一", "二", "三", "[MASK]"))
    text = "一" * 3 + "[MASK]" + "二" * 5 + "[MASK]" + "三" * 300
    item = predictor.prepare(text)
    room = predictor.max_length - 2
    body = [one] * 3 + [mask] + [two] * 5 + [mask] + [three] * (room - 10)
    assert list(item.input_ids) == [ids["[CLS]"], *body, ids["[SEP]"]]
    assert item.mask_positions == (4, 10)


def test_window_centres_a_mask_far_into_the_text(predictor, tiny_model_dir):
    """A mask in the middle of a long text gets context on both sides, as evenly as possible."""
    ids = _vocab_ids(tiny_model_dir)
    one, three, mask = (ids.get(c, ids["[UNK]"]) for c in ("一", "三", "[MASK]"))
    item = predictor.prepare("一" * 200 + "[MASK]" + "三" * 200)
    window = list(item.input_ids)
    assert len(window) == predictor.max_length
    assert window[0] == ids["[CLS]"] and window[-1] == ids["[SEP]"]
    (at,) = item.mask_positions
    assert window[at] == mask
    left, right = window[1:at], window[at + 1 : -1]
    assert set(left) == {one} and set(right) == {three}
    assert abs(len(left) - len(right)) <= 1


def test_config_from_env():
    env = {
        "MODEL_DIR": "/m",
        "MODEL_PRECISION": "int8",
        "MAX_LENGTH": "128",
        "BATCHING": "off",
        "BATCH_WINDOW_MS": "1.5",
        "WORKERS": "4",
    }
    cfg = Config.from_env(env)
    assert (cfg.model_dir, cfg.model_precision, cfg.max_length) == ("/m", "int8", 128)
    assert cfg.batching is False and cfg.batch_window_ms == 1.5
    with pytest.raises(ValueError, match="MAX_LENGTH"):
        Config.from_env({"MAX_LENGTH": "lots"})


def test_max_length_beyond_the_model_is_refused(tiny_model_dir):
    from fillmask.predictor import Predictor

    with pytest.raises(ModelFilesError, match="MAX_LENGTH=4096 is out of range"):
        Predictor(tiny_model_dir, max_length=4096)


@pytest.mark.parametrize(
    "cores,env,threads",
    [
        (8, {}, 4),  # 2 workers by default: half the cores each
        (8, {"WORKERS": "4"}, 2),
        (4, {"WORKERS": "3"}, 1),  # rounded down
        (2, {"WORKERS": "8"}, 1),  # never 0
        (None, {}, 1),  # cpu_count unknown
        (8, {"WORKERS": "lots"}, 4),  # Gunicorn reports a bad WORKERS itself
        (8, {"ORT_THREADS": "3"}, 3),  # set explicitly: kept
    ],
)
def test_ort_threads_default_is_cores_per_worker(monkeypatch, cores, env, threads):
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert Config.from_env(env).ort_threads == threads
