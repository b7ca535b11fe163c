"""GET / with the Flask test client: the page renders, uses only local static files, and has no
inline script, inline style or inline event handler (the Content-Security-Policy forbids them)."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import SEED, TINY_MAX_LENGTH, make_config

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "static"


class PageParser(HTMLParser):
    """Collects every start tag with its attributes and the text inside <script>/<style>."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.inline = []  # (tag, text) of non-blank <script>/<style> bodies
        self._open = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline.append((self._open, data))


@pytest.fixture(scope="module")
def page(app):
    response = app.test_client().get("/")
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return response, parser


def urls(parser):
    """Every src/href in the page."""
    return [attrs[name] for _, attrs in parser.tags for name in ("src", "href") if name in attrs]


def test_page_renders_in_chinese_with_the_example(page):
    response, parser = page
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    assert "床前明月光，疑是地上[MASK]。</textarea>" in html
    ids = {attrs.get("id") for _, attrs in parser.tags}
    assert {
        "text",
        "insert-mask",
        "top-k",
        "predict",
        "choices",
        "status",
        "results",
        "best-sentence",
        "meta",
    } <= ids


def test_limits_and_endpoint_come_from_the_config(page, app):
    _, parser = page
    (main,) = [attrs for tag, attrs in parser.tags if attrs.get("id") == "app"]
    cfg = app.extensions["fillmask"].config
    assert main["data-predict-url"] == "/predict"
    assert main["data-max-masks"] == str(cfg.max_masks)
    options = [attrs["value"] for tag, attrs in parser.tags if tag == "option"]
    assert options == ["1", "3", "5", "10", "20"]
    (selected,) = [
        attrs["value"] for tag, attrs in parser.tags if tag == "option" and "selected" in attrs
    ]
    assert selected == "5"


def test_only_local_static_files(page, client):
    _, parser = page
    found = urls(parser)
    assert "/static/page.js" in found and "/static/page.css" in found
    for url in found:
        assert url.startswith("/static/"), url
        assert client.get(url).status_code == 200, url


def test_no_inline_script_style_or_handlers(page):
    response, parser = page
    assert parser.inline == []
    for tag, attrs in parser.tags:
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/")
        assert "style" not in attrs, tag
        handlers = [name for name in attrs if name.startswith("on")]
        assert handlers == [], (tag, handlers)
    assert "javascript:" not in response.get_data(as_text=True).lower()


def test_static_files_name_no_other_host():
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        # The SVG's xmlns is a namespace name, not something a browser fetches.
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import", text, re.I), path


def test_script_never_writes_html():
    """User and model text reach the page through textContent only."""
    source = (STATIC / "page.js").read_text(encoding="utf-8")
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        'setAttribute("style"',
    ):
        assert sink not in source, sink
    assert "textContent" in source


def test_page_renders_without_a_model(tmp_path):
    """The page does not need the model: it loads and then shows the API's 503 message."""
    from app import create_app

    broken = create_app(make_config(tmp_path / "no-model"), strict=False)
    response = broken.test_client().get("/")
    assert response.status_code == 200
    assert b'id="text"' in response.data


def test_hanzi_toggle_box_blanks_and_the_idiom_example(page):
    response, parser = page
    inputs = {attrs.get("id"): attrs for tag, attrs in parser.tags if tag == "input"}
    assert inputs["hanzi-only"]["type"] == "checkbox" and "checked" in inputs["hanzi-only"]
    assert inputs["idioms"]["type"] == "checkbox" and "checked" not in inputs["idioms"]
    html = response.get_data(as_text=True)
    assert "□" in html and "答案里的 □ 会换成候选的字" in html  # the hint says □ is filled
    examples = [attrs for tag, attrs in parser.tags if "example" in attrs.get("class", "")]
    (idiom,) = [attrs for attrs in examples if "data-idioms" in attrs]
    assert idiom["data-text"] == "画蛇□□，多此一举。"
    ids = {attrs.get("id") for _, attrs in parser.tags}
    assert {"idiom-box", "idiom-list"} <= ids


def test_script_sends_the_new_fields():
    """The request fields the page uses exist in its script, spelled as the API names them."""
    source = (STATIC / "page.js").read_text(encoding="utf-8")
    for field in ("body.hanzi_only = true", "body.blank = BOX", "body.idioms = true"):
        assert field in source, field
    assert 'const BOX = "□"' in source and "|□/giu" in source


# -- several models (issue 20 §3) ---------------------------------------------------------------

LARGER = "tiny-larger"  # the default of the two-model page: first in MODEL_DIR, more weights


def export_larger_model(tmp_path_factory):
    """A random model bigger than the tiny one, exported once per session (test_browser.py
    serves it too); returns its directory."""
    pytest.importorskip("torch")
    out = tmp_path_factory.getbasetemp() / "page-larger-model"
    if not (out / "model.onnx").exists():
        import export_onnx
        from fillmask.random_model import build_random_model

        source = tmp_path_factory.getbasetemp() / "page-larger-src"
        build_random_model(
            source,
            hidden_size=48,
            num_layers=3,
            num_heads=4,
            intermediate_size=96,
            max_position_embeddings=TINY_MAX_LENGTH,
            seed=SEED + 202,
        )
        args = ["--model", str(source), "--output", str(out), "--int8", "--name", LARGER]
        assert export_onnx.main(args) == 0
    return out


@pytest.fixture(scope="module")
def larger_dir(tmp_path_factory):
    return export_larger_model(tmp_path_factory)


def main_attrs(parser):
    (main,) = [attrs for tag, attrs in parser.tags if attrs.get("id") == "app"]
    return main


def test_one_model_page_has_no_picker(page):
    """With one model the page is as before: the name list only, no picker, no fast model."""
    response, parser = page
    main = main_attrs(parser)
    assert json.loads(main["data-models"]) == ["tiny-random-bert"]
    assert "data-fast" not in main
    ids = {attrs.get("id") for _, attrs in parser.tags}
    assert not {"model", "model-help", "answer-model"} & ids
    assert "自动" not in response.get_data(as_text=True)


def test_two_models_give_the_picker_and_the_fast_model(larger_dir, tiny_model_dir):
    from app import create_app

    both = create_app(make_config(f"{larger_dir},{tiny_model_dir}"))
    response = both.test_client().get("/")
    assert response.status_code == 200
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    main = main_attrs(parser)
    assert json.loads(main["data-models"]) == [LARGER, "tiny-random-bert"]  # MODEL_DIR order
    # The fast model is the one with fewer weight bytes on disk (the files, read here).
    sizes = {
        name: (path / "model.onnx").stat().st_size
        for name, path in ((LARGER, larger_dir), ("tiny-random-bert", tiny_model_dir))
    }
    assert main["data-fast"] == min(sizes, key=sizes.get) == "tiny-random-bert"
    options = [
        (attrs["value"], "selected" in attrs)
        for tag, attrs in parser.tags
        if tag == "option" and attrs.get("value") in ("", LARGER, "tiny-random-bert")
    ]
    assert options == [("", True), (LARGER, False), ("tiny-random-bert", False)]  # 自动 first
    ids = {attrs.get("id") for _, attrs in parser.tags}
    assert {"model", "model-help", "answer-model"} <= ids
    assert parser.inline == []  # still nothing inline for the CSP


def test_model_names_are_escaped_in_the_attributes(tiny_model_dir):
    """data-models is JSON in a single-quoted attribute: a quote in a name cannot break out."""
    from flask import render_template

    from app import create_app

    app = create_app(make_config(tiny_model_dir))
    names = ["it's <b>&\"", "二"]
    with app.test_request_context("/"):
        html = render_template(
            "index.html", limits={"max_masks": 1, "max_top_k": 5}, models=names, fast=names[0]
        )
    parser = PageParser()
    parser.feed(html)
    main = main_attrs(parser)
    assert json.loads(main["data-models"]) == names and main["data-fast"] == names[0]
    assert "<b>" not in html
