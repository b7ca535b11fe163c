// The fill-in page: sends the sentence to POST /predict while the user types and shows the
// candidates. Text from the user or the model only ever reaches the page through textContent.

const MASK = "[MASK]";
const BOX = "□";   // one per character, as worksheets print blanks; sent with "blank": "□"
// The spellings the server accepts (fillmask/text.py): [MASK], [mask], full-width ［MASK］, and
// □ when the request says "blank": "□".
const MASK_PATTERN = /[\[［]\s*mask\s*[\]］]|□/giu;
const DEBOUNCE_MS = 300;
// With several models, "自动" mode: typing is answered by the fastest model after DEBOUNCE_MS;
// a pause this long (or Enter) asks the default one, whose answer replaces the quick one.
const PAUSE_MS = 800;
const TOKEN_KEY = "fillmask-token";   // sessionStorage: kept for this tab only

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"), form: $("fill-form"), text: $("text"), topK: $("top-k"), choices: $("choices"),
  insert: $("insert-mask"), tokenBox: $("token-box"), token: $("token"), status: $("status"),
  results: $("results"), best: $("best"), bestSentence: $("best-sentence"),
  choiceBox: $("choice-box"), choiceList: $("choice-list"), blanks: $("blanks"), meta: $("meta"),
  hanziOnly: $("hanzi-only"), idioms: $("idioms"), idiomBox: $("idiom-box"),
  idiomList: $("idiom-list"), model: $("model"), answerModel: $("answer-model"),
};
const predictUrl = ui.app.dataset.predictUrl;
// Served model names, the default first; with one model no "model" field is ever sent.
const models = JSON.parse(ui.app.dataset.models || "[]");
const fast = ui.app.dataset.fast;
const several = models.length > 1 && Boolean(ui.model);

let latest = 0;          // id of the newest request: answers to older ones are stale
let inflight = null;     // AbortController of the request in flight
let timer = 0;           // debounce timer
let pauseTimer = 0;      // the default model's turn after a pause in typing

/** [start, end) of every mask in text, in order. */
function findMasks(text) {
  return Array.from(text.matchAll(MASK_PATTERN), (m) => [m.index, m.index + m[0].length]);
}

/** Mask indexes grouped into blanks: only directly adjacent masks share a blank. */
function groupBlanks(spans) {
  const blanks = [];
  spans.forEach(([start], i) => {
    const last = blanks[blanks.length - 1];
    if (last && spans[last[last.length - 1]][1] === start) last.push(i);
    else blanks.push([i]);
  });
  return blanks;
}

/** The 选项 field as a list of words (comma, space, 、 or semicolon separated). */
function parseChoices(value) {
  return value.split(/[\s,，、;；]+/u).filter(Boolean);
}

/** text with masks first..last replaced by word, or null when text has no such masks. */
function fillMasks(text, first, last, word) {
  const spans = findMasks(text);
  if (last >= spans.length) return null;
  return text.slice(0, spans[first][0]) + word + text.slice(spans[last][1]);
}

/** A new element with an optional class and text (never HTML). */
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatPercent(probability) {
  return probability > 0 && probability < 0.01 ? "<0.01%" : `${probability.toFixed(2)}%`;
}

/** One of: "" (nothing to say), "hint", "loading", "error". */
function showStatus(kind, message) {
  ui.status.className = kind ? `status status-${kind}` : "status";
  ui.status.textContent = message || "";
  ui.results.setAttribute("aria-busy", String(kind === "loading"));
}

function clearResults() {
  ui.best.hidden = true;
  ui.choiceBox.hidden = true;
  ui.choiceList.replaceChildren();
  ui.idiomBox.hidden = true;
  ui.idiomList.replaceChildren();
  ui.blanks.replaceChildren();
}

/** The model to ask (null: the server's default, no field sent): in 自动 mode the fast one
 * while typing (live), the default one otherwise; a model picked in the list always. */
function modelFor(live) {
  if (!several) return null;
  if (ui.model.value) return ui.model.value;
  return live ? fast : models[0];
}

/** After typing: a quick answer soon, and the default model's after a longer pause. */
function schedule() {
  clearTimeout(timer);
  clearTimeout(pauseTimer);
  timer = setTimeout(() => predict(true), DEBOUNCE_MS);
  if (modelFor(true) !== modelFor(false)) pauseTimer = setTimeout(() => predict(), PAUSE_MS);
}

/** Ask the server about the current text; only the newest answer is ever shown. ``live``:
 * the debounced request while typing (the fast model when several are served). */
async function predict(live = false) {
  clearTimeout(timer);
  if (!live) clearTimeout(pauseTimer);
  const text = ui.text.value;
  const id = ++latest;
  if (inflight) inflight.abort();
  inflight = null;
  const spans = findMasks(text);
  if (!spans.length) {
    clearResults();
    showStatus("hint", text.trim()
      ? "句子里还没有 [MASK]：把要填的字换成 [MASK]（“插入 [MASK]” 按钮或 Ctrl+M）或 □，候选就会出现在这里。"
      : "先写一个句子，再把要填的字换成 [MASK] 或 □。");
    return;
  }
  const blanks = groupBlanks(spans);
  const body = { text, top_k: Number(ui.topK.value) };
  if (blanks.some((b) => b.length > 1)) body.joint = true;
  if (ui.hanziOnly.checked) body.hanzi_only = true;
  if (text.includes(BOX)) body.blank = BOX;
  if (ui.idioms.checked && blanks.length === 1) body.idioms = true;
  const choices = parseChoices(ui.choices.value);
  if (choices.length) body.candidates = choices;
  const model = modelFor(live);
  if (model) body.model = model;

  const controller = new AbortController();
  inflight = controller;
  showStatus("loading", model ? `正在预测…（${model}）` : "正在预测…");
  const started = performance.now();
  let response;
  let data = null;
  try {
    response = await fetch(predictUrl, {
      method: "POST", headers: requestHeaders(),
      body: JSON.stringify(body), signal: controller.signal,
    });
    data = await response.json().catch(() => null);
  } catch (err) {
    if (id !== latest) return;
    inflight = null;
    clearResults();
    showStatus("error", "无法连接服务器：请确认服务正在运行、网络已连通，然后按“预测”重试。");
    return;
  }
  if (id !== latest) return;
  inflight = null;
  if (!response.ok || !data || data.success !== true) {
    clearResults();
    if (response.status === 401) ui.tokenBox.hidden = false;
    showStatus("error", serverError(response, data));
    return;
  }
  render(text, blanks, data, choices.length > 0);
  showMeta(data, performance.now() - started);
  if (several) showAnswerModel(data.model, live && modelFor(true) !== modelFor(false));
}

/** The answering model's name beside the answer; a quick preview says that more is coming. */
function showAnswerModel(name, preview) {
  ui.answerModel.replaceChildren("答案来自 ", el("strong", "", name),
    preview ? `（打字时的快速预览；停顿片刻后由 ${models[0]} 给出答案）` : "");
}

/** JSON, and the API token when this server needs one. */
function requestHeaders() {
  const headers = { "Content-Type": "application/json" };
  const token = ui.token.value.trim();
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

/** The message of a JSON error body, or what is known without one. */
function serverError(response, data) {
  if (data && typeof data.error === "string") {
    return `服务器拒绝了请求：${data.error}${data.code ? `（${data.code}）` : ""}`;
  }
  return `服务器出错（HTTP ${response.status}），请稍后再试。`;
}

/** Show every blank's candidates, the ranked choices and the best sentence. */
function render(text, localBlanks, data, askedChoices) {
  clearResults();
  const tops = [];
  const groups = Array.isArray(data.blanks)
    ? data.blanks.map((b) => ({ masks: b.masks, words: b.words }))
    : data.masks.map((m) => ({ masks: [m.index], words: null }));
  const joint = Array.isArray(data.blanks);
  groups.forEach((group, n) => {
    const first = group.masks[0];
    const last = group.masks[group.masks.length - 1];
    const whole = group.masks.length > 1;
    const list = whole ? group.words : data.masks[first].candidates;
    const title = joint
      ? `第 ${n + 1} 空${whole ? `（${group.masks.length} 个字，整词候选）` : ""}`
      : `第 ${n + 1} 个 [MASK]`;
    const box = el("section", "blank");
    box.append(el("h2", "", title), candidateList(list, first, last));
    if (whole) {
      const details = el("details", "per-char");
      details.append(el("summary", "", "逐字候选（各字分别预测）"));
      group.masks.forEach((i, k) => details.append(
        el("h3", "", `第 ${k + 1} 个字`), candidateList(data.masks[i].candidates, i, i)));
      box.append(details);
    }
    ui.blanks.append(box);
    if (list.length) tops.push([first, last, list[0].word]);
  });

  let best = text;
  tops.reverse().forEach(([first, last, word]) => {
    best = fillMasks(best, first, last, word) ?? best;
  });
  if (Array.isArray(data.idioms)) {
    const last = findMasks(text).length - 1;
    ui.idiomList.append(...data.idioms.map((idiom) => idiomItem(idiom, 0, last)));
    if (!data.idioms.length) ui.idiomList.append(el("li", "none", "成语词典里没有填得进这个空的成语。"));
    ui.idiomBox.hidden = false;
    if (data.idioms.length) best = data.idioms[0].sequence;
  }
  if (Array.isArray(data.choices) && data.choices.length) {
    const spans = findMasks(text);
    ui.choiceList.append(...data.choices.map(
      (c) => candidateItem(c.word, c.probability, 0, spans.length - 1,
                           `对数似然 ${c.log_likelihood}`)));
    ui.choiceBox.hidden = false;
    best = data.choices[0].sequence;
  }
  ui.bestSentence.textContent = best;
  ui.best.hidden = false;
  if (askedChoices && !Array.isArray(data.choices)) {
    showStatus("hint", "这个服务器还不支持选项排序，下面是模型自己的候选。");
  } else {
    showStatus("", "");
  }
}

function candidateList(candidates, first, last) {
  const list = el("ol", "candidates");
  list.append(...candidates.map((c) => candidateItem(c.word, c.probability, first, last)));
  return list;
}

/** One lexicon idiom: its button (filling the blank with what the idiom puts there), its
 * pinyin and its meaning; the source (出处) as the button's tooltip. */
function idiomItem(idiom, first, last) {
  const item = candidateItem(idiom.word, idiom.probability, first, last,
                             idiom.derivation ? `出处：${idiom.derivation}` : "", idiom.fill);
  item.append(el("p", "pinyin", idiom.pinyin), el("p", "meaning", idiom.explanation));
  return item;
}

/** One candidate: a button that fills masks first..last with fillWith (default: its word). */
function candidateItem(word, probability, first, last, note, fillWith = word) {
  const item = el("li");
  const button = el("button", "cand");
  button.type = "button";
  const bar = el("span", "bar");
  const fill = el("span", "bar-fill");
  // CSSOM, not a style attribute: allowed by the page's Content-Security-Policy.
  fill.style.width = `${Math.min(100, Math.max(0, probability))}%`;
  bar.append(fill);
  button.append(el("span", "word", word), bar, el("span", "pct", formatPercent(probability)));
  const label = fillWith === word ? `填入“${word}”` : `填入“${fillWith}”（${word}）`;
  button.setAttribute("aria-label", `${label}，概率 ${formatPercent(probability)}`);
  if (note) button.title = note;
  button.addEventListener("click", () => pick(first, last, fillWith));
  item.append(button);
  return item;
}

/** Fill masks first..last of the current text with word, then predict what is left. */
function pick(first, last, word) {
  const spans = findMasks(ui.text.value);
  const filled = fillMasks(ui.text.value, first, last, word);
  if (filled === null) return;        // the text was edited and lost those masks meanwhile
  const caret = spans[first][0] + word.length;
  ui.text.value = filled;
  ui.text.focus();
  ui.text.setSelectionRange(caret, caret);
  predict();
}

function showMeta(data, roundTripMs) {
  ui.meta.textContent = `${data.model} · ${data.precision} · 服务器 ${data.elapsed_ms} ms`
    + ` · 往返 ${Math.round(roundTripMs)} ms`;
}

/** Put [MASK] at the cursor (replacing any selection) and predict. */
function insertMask() {
  const { selectionStart, selectionEnd } = ui.text;
  ui.text.setRangeText(MASK, selectionStart, selectionEnd, "end");
  ui.text.focus();
  predict();
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  predict();
});
ui.insert.addEventListener("click", insertMask);
ui.text.addEventListener("input", (event) => {
  // While an input method is composing, wait for the finished characters.
  if (!event.isComposing) schedule();
});
ui.text.addEventListener("compositionend", () => schedule());
ui.choices.addEventListener("input", () => schedule());
ui.token.addEventListener("input", () => {
  sessionStorage.setItem(TOKEN_KEY, ui.token.value.trim());
  schedule();
});
ui.topK.addEventListener("change", () => predict());
ui.hanziOnly.addEventListener("change", () => predict());
ui.idioms.addEventListener("change", () => predict());
if (several) ui.model.addEventListener("change", () => predict());
document.addEventListener("keydown", (event) => {
  if (!(event.ctrlKey || event.metaKey) || event.altKey || event.isComposing) return;
  if (event.key === "Enter") {
    event.preventDefault();
    predict();
  } else if (event.key.toLowerCase() === "m") {
    event.preventDefault();
    insertMask();
  }
});
document.querySelectorAll(".example").forEach((button) => {
  button.addEventListener("click", () => {
    ui.text.value = button.dataset.text;
    ui.choices.value = button.dataset.choices || "";
    ui.idioms.checked = Boolean(button.dataset.idioms);   // an example is a preset
    ui.text.focus();
    predict();
  });
});

ui.token.value = sessionStorage.getItem(TOKEN_KEY) || "";
ui.tokenBox.hidden = !ui.token.value;
predict();
