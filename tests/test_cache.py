"""The LRU cache as deployed (issue 12): hits equal fresh answers, the key holds every field,
least-recently-used eviction, the byte bound (issue 11 §1) and the hit/miss counters."""

import sys

import pytest
from conftest import make_config

from fillmask.cache import LRUCache
from fillmask.config import Config

BASE = {"text": "今天天气真[MASK]啊，我们去[MASK]园", "top_k": 5}
# Each differs from BASE (or from the previous request) in one field: a cache that left that
# field out of its key would answer it with the previous request's answer.
VARIANTS = [
    ("/predict", BASE),
    ("/predict", {**BASE, "text": "今天天气真[MASK]啊，我们去[MASK]场"}),
    ("/predict", {"texts": [BASE["text"]], "top_k": 5}),
    ("/predict", {"texts": [BASE["text"], "好[MASK]"], "top_k": 5}),
    ("/predict", {**BASE, "top_k": 6}),
    ("/predict", {**BASE, "targets": ["好", "的"]}),
    ("/predict", {**BASE, "targets": ["好", "人"]}),
    ("/predict", {**BASE, "targets": ["好"]}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "top_k": 5}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "top_k": 5, "joint": True}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "top_k": 4, "joint": True}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "candidates": ["添足", "添花"]}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "candidates": ["添足", "画龙"]}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "candidates": ["添足", "画龙"], "joint": True}),
    ("/fill-mask", {"inputs": BASE["text"]}),
    ("/fill-mask", {"inputs": [BASE["text"]]}),
    ("/fill-mask", {"inputs": BASE["text"], "parameters": {"top_k": 6}}),
    ("/fill-mask", {"inputs": BASE["text"], "parameters": {"targets": ["好"]}}),
    ("/fill-mask", {"inputs": "画蛇[MASK][MASK]"}),
    ("/predict", {"text": "画蛇[MASK][MASK]", "top_k": 5}),
]


def without_timing(body):
    if isinstance(body, dict):
        body.pop("elapsed_ms", None)
    return body


@pytest.fixture(scope="module")
def deployed(tiny_model_dir):
    """An app with the cache on, at the deployed defaults."""
    from app import create_app

    defaults = Config()
    return create_app(
        make_config(
            tiny_model_dir, cache_size=defaults.cache_size, cache_bytes=defaults.cache_bytes
        )
    )


def test_deployed_cache_is_on():
    assert Config().cache_size > 0 and Config().cache_bytes > 0


def test_every_request_field_is_part_of_the_key(deployed, client):
    """Each variant, asked twice in a row through the cache, equals the uncached answer."""
    cached = deployed.test_client()
    for path, body in VARIANTS + VARIANTS:
        fresh = client.post(path, json=body)
        got = cached.post(path, json=body)
        assert got.status_code == fresh.status_code == 200, (path, body)
        assert without_timing(got.get_json()) == without_timing(fresh.get_json()), (path, body)


def test_a_hit_is_served_without_the_model_and_equals_a_fresh_answer(deployed, client, monkeypatch):
    rt = deployed.extensions["fillmask"]
    cached = deployed.test_client()
    body = {"texts": ["我爱北京[MASK]安门", "画蛇[MASK][MASK]"], "top_k": 7, "joint": True}
    first = cached.post("/predict", json=body).get_json()
    hits, misses = rt.cache.hits, rt.cache.misses

    def no_model(*args, **kwargs):
        raise AssertionError("a cached request ran the model")

    monkeypatch.setattr(rt.predictor, "infer", no_model)
    second = cached.post("/predict", json=body).get_json()
    assert rt.cache.hits == hits + 1 and rt.cache.misses == misses  # the whole body
    monkeypatch.undo()
    fresh = client.post("/predict", json=body).get_json()
    assert without_timing(second) == without_timing(first) == without_timing(fresh)


def test_counters_count_misses_then_hits():
    cache = LRUCache(size=4)
    assert cache.get("a") is None
    cache.put("a", "A")
    assert cache.get("a") == "A" and cache.get("a") == "A" and cache.get("b") is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_least_recently_used_is_evicted_first():
    cache = LRUCache(size=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recent: b is the oldest
    cache.put("d", "D")
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    cache.put("e", "E")  # order now a, c, d, e → a goes
    assert cache.get("a") is None and len(cache) == 3


def test_byte_bound_holds_and_evicts_oldest_first():
    cache = LRUCache(size=100, max_bytes=1000, sizer=lambda key, body: len(key) + len(body))
    for i in range(10):
        cache.put(f"k{i}", "x" * 298)  # 300 bytes with its key
        assert cache.bytes <= 1000
    assert len(cache) == 3 and cache.bytes == 900
    assert [cache.get(f"k{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    cache.put("big", "x" * 998)  # 1001 bytes: larger than the whole bound, never stored
    assert cache.get("big") is None and len(cache) == 3
    cache.put("k9", "y")  # replacing an entry counts its new size only
    assert cache.bytes == 600 + 3


@pytest.mark.parametrize("size,max_bytes", [(0, 1 << 20), (8, 0)])
def test_zero_stores_nothing(size, max_bytes):
    cache = LRUCache(size=size, max_bytes=max_bytes)
    cache.put("a", "A")
    assert cache.get("a") is None and len(cache) == 0


def test_an_entry_costs_its_body_length_and_its_key():
    """A stored body is bytes: its size is its length (plus the key's text), exactly."""
    cache = LRUCache(size=4, max_bytes=1 << 20)
    body = "天".encode() * 1000
    cache.put(("predict", "key"), body)
    assert cache.bytes == 3000 + sys.getsizeof(repr(("predict", "key")))


def test_deployed_cache_stores_the_body_it_sent(tiny_model_dir):
    from app import create_app

    app = create_app(make_config(tiny_model_dir, cache_size=8))
    client, cache = app.test_client(), app.extensions["fillmask"].cache
    r = client.post("/fill-mask", json={"inputs": "今天[MASK]好"})
    ((_, (stored, _)),) = cache._data.items()
    assert stored == r.get_data()


def test_deployed_cache_stays_within_its_byte_bound(tiny_model_dir):
    from app import create_app

    bound = 300_000
    app = create_app(make_config(tiny_model_dir, cache_size=256, cache_bytes=bound))
    cache, client = app.extensions["fillmask"].cache, app.test_client()
    for i in range(12):
        text = "天" * 300 + f"{i}[MASK]"  # each answer ~100 KB in memory: a few fit
        assert client.post("/predict", json={"text": text, "top_k": 50}).status_code == 200
        assert 0 < cache.bytes <= bound
    assert 1 < len(cache) < 12
    # An answer larger than the whole bound is answered but never kept.
    big = {"texts": ["天" * 400 + f"{i}[MASK][MASK]" for i in range(3)], "top_k": 50}
    stored = len(cache)
    assert client.post("/predict", json=big).status_code == 200
    assert len(cache) == stored and cache.bytes <= bound
    hits = cache.hits
    assert client.post("/predict", json=big).status_code == 200
    assert cache.hits == hits
