// The bilrp explorer: two texts in, the token-pair relevance out (pair view and heatmap), served by `bilrp serve`.
"use strict";

import { download, getJSON } from "./api.js";
import { drawHeatmap } from "./heatmap.js";
import { drawPairs } from "./pairs.js";
import { initSearch } from "./search.js";
import { clear, el, fixed, partners, percent, prepare, signed } from "./util.js";

const $ = (id) => document.getElementById(id);

const METHOD_LABELS = {
  bilrp: "BiLRP",
  hxp: "H×P (gradient × input)",
  ij: "Integrated Jacobians",
  embedding: "embedding baseline",
  random: "random baseline",
};

const state = {
  busy: false,
  view: "pairs",
  // what is shown: {data, prepared, source ("explain" | "search"), request (the /api/explain body that gives it),
  // download ({path, body, name}: the route that gives its files, for a search result /api/rank/figure),
  // notes (those of the answer's X-Bilrp-Notes header), requested (granularity), title, names}
  shown: null,
};

// ---------------------------------------------------------------------------------------------------- errors

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function hideError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function clearResult() {
  state.shown = null;
  $("result").hidden = true;
  clear($("pairs-svg"));
  clear($("heatmap-svg"));
  clear($("summary"));
  clear($("notes"));
  hideTooltip();
}

// ------------------------------------------------------------------------------------------------- selectors

function fillSelect(select, values, labels = {}, selected = undefined) {
  clear(select);
  for (const value of values) select.append(el("option", { value, text: labels[value] || value }));
  if (selected !== undefined && values.includes(selected)) select.value = selected;
}

function applyHealth(health) {
  fillSelect($("method"), health.methods || ["bilrp"], METHOD_LABELS, "bilrp");
  fillSelect($("granularity"), health.granularities || ["auto", "token", "word", "sentence"], {}, "auto");
  $("granularity").title = autoRule(health);
  const models = health.models || [];
  fillSelect($("model"), models, {}, health.default_model);
  $("model-control").hidden = models.length < 2;
  const limits = health.limits || {};
  if (limits.max_text_chars) {
    $("text-a").maxLength = limits.max_text_chars;
    $("text-b").maxLength = limits.max_text_chars;
  }
  const held = models.length > 1 ? `${models.length} models` : health.default_model || models[0] || "";
  $("server-info").textContent = `bilrp ${health.version || ""} · ${held}`;
  if (health.index) initSearch(health, { show: showExplanation, showError, hideError });
}

function autoRule(health) {
  const words = health.auto_word_from;
  const sentences = health.auto_sentence_from;
  if (typeof words !== "number") return "auto: the server picks the granularity by length";
  if (typeof sentences !== "number") return `auto: tokens up to ${words} words, words beyond`;
  return `auto: tokens up to ${words} words, words up to ${sentences}, sentences beyond`;
}

// ----------------------------------------------------------------------------------------------- explaining

function setBusy(busy) {
  state.busy = busy;
  $("explain").disabled = busy;
  $("busy").hidden = !busy;
  document.body.classList.toggle("computing", busy);
}

function explainRequest() {
  const request = {
    text_a: $("text-a").value,
    text_b: $("text-b").value,
    method: $("method").value || "bilrp",
    granularity: $("granularity").value || "auto",
  };
  if (!$("model-control").hidden && $("model").value) request.model = $("model").value;
  return request;
}

async function explain() {
  if (state.busy) return;
  const request = explainRequest();
  setBusy(true);
  hideError();
  try {
    const data = await getJSON("/api/explain", request);
    showExplanation(data, { source: "explain", request, requested: request.granularity });
  } catch (error) {
    clearResult();
    showError(error.message);
  } finally {
    setBusy(false);
  }
}

// ---------------------------------------------------------------------------------------------------- result

/** Show an explanation (the /api/explain answer, or a search result) in the summary and the current view. */
function showExplanation(data, context = {}) {
  hideError();
  const prepared = prepare(data);
  state.shown = { data, prepared, ...context };
  $("result").hidden = false;
  renderSummary(data, prepared, context);
  renderNotes(context.notes ?? data.notes);
  const slider = $("pair-count");
  const total = prepared.tokensA.length * prepared.tokensB.length;
  slider.max = String(Math.max(1, Math.min(300, total)));
  if (Number(slider.value) > Number(slider.max)) slider.value = slider.max;
  $("pair-count-value").textContent = slider.value;
  resetDetails();
  render();
}

function renderSummary(data, prepared, context) {
  const summary = $("summary");
  clear(summary);
  const line = `score ${fixed(data.score)} = ΣR ${fixed(prepared.total)} + bias ${fixed(data.bias)} ` +
    `(bias share ${percent(data.bias_share)})`;
  if (context.title) summary.append(el("p", { class: "context", text: context.title }));
  summary.append(el("p", { class: "score", id: "score-line", text: line }));
  const used = data.granularity || "token";
  const granularity = context.requested === "auto" ? `${used} (auto)` : used;
  const facts = [
    ["model", data.model],
    ["method", METHOD_LABELS[data.method] || data.method],
    ["rules", data.rules],
    ["granularity", granularity],
    ["size", `${prepared.tokensA.length} × ${prepared.tokensB.length}`],
    ["time", elapsed(data)],
  ];
  const meta = el("dl", { class: "meta" });
  for (const [name, value] of facts) {
    if (value === null || value === undefined || value === "") continue;
    meta.append(el("div", { dataset: { fact: name } }, [el("dt", { text: name }), el("dd", { text: String(value) })]));
  }
  summary.append(meta);
  const split = biasSplit(data);
  if (split) summary.append(el("p", { class: "bias-split muted", text: split }));
}

function elapsed(data) {
  if (typeof data.elapsed_s !== "number") return null;
  const seconds = data.elapsed_s;
  const time = seconds < 1 ? `${Math.max(1, Math.round(seconds * 1000))} ms` : `${seconds.toFixed(2)} s`;
  return data.cached ? `${time} (cached)` : time;
}

function biasSplit(data) {
  const sum = (values) => (Array.isArray(values) ? values.reduce((s, v) => s + (Number.isFinite(v) ? v : 0), 0) : null);
  const row = sum(data.tokens_a_with_bias_b);
  const column = sum(data.bias_a_with_tokens_b);
  if (row === null || column === null || typeof data.bias_with_bias !== "number") return null;
  const text = `bias ${fixed(data.bias)} = A's tokens × B's bias ${fixed(row)} ` +
    `+ A's bias × B's tokens ${fixed(column)} + bias × bias ${fixed(data.bias_with_bias)}`;
  const stepError = data.step_error;
  if (typeof stepError !== "number" || Math.abs(stepError) <= 1e-4) return text;
  return `${text} (integration step error ${signed(stepError)})`;
}

function renderNotes(notes) {
  const list = $("notes");
  clear(list);
  for (const note of Array.isArray(notes) ? notes : []) list.append(el("li", { text: String(note) }));
  list.hidden = list.children.length === 0;
}

function viewWidth() {
  return Math.max(320, $("pairs-panel").parentElement.clientWidth - 2);
}

function render() {
  const shown = state.shown;
  if (!shown) return;
  const pairsView = state.view === "pairs";
  $("pairs-panel").hidden = !pairsView;
  $("heatmap-panel").hidden = pairsView;
  $("pairs-options").classList.toggle("disabled", !pairsView);
  $("view-pairs").setAttribute("aria-selected", String(pairsView));
  $("view-heatmap").setAttribute("aria-selected", String(!pairsView));
  const hooks = {
    onToken: showDetails,
    onPair: showPairTip,
    onCell: showPairTip,
    onPairMove: moveTooltip,
    onLeave: hideTooltip,
  };
  if (pairsView) {
    const options = { k: Number($("pair-count").value), sign: $("sign").value, width: viewWidth(), names: shown.names };
    const drawn = drawPairs($("pairs-svg"), shown.prepared, options, hooks);
    clear($("heatmap-svg"));
    renderCaption(drawn.pairs, shown.prepared);
  } else {
    drawHeatmap($("heatmap-svg"), shown.prepared, { width: viewWidth() }, hooks);
    clear($("pairs-svg"));
    const names = { a: "text A", b: "text B", ...shown.names };
    $("caption").textContent = `${shown.prepared.tokensA.length} rows (${names.a}) × ` +
      `${shown.prepared.tokensB.length} columns (${names.b}); hover a cell for its relevance.`;
  }
  const scale = shown.prepared.maxAbs;
  $("scale").hidden = pairsView;
  $("scale-min").textContent = signed(-scale);
  $("scale-max").textContent = signed(scale);
}

function renderCaption(pairs, prepared) {
  const covered = pairs.reduce((s, p) => s + Math.abs(p.v), 0);
  const share = prepared.totalAbs > 0 ? covered / prepared.totalAbs : 0;
  const all = prepared.tokensA.length * prepared.tokensB.length;
  $("caption").textContent = `${pairs.length} of ${all} pairs shown, ${percent(share)} of Σ|R|. ` +
    "Hover a token to highlight its pairs.";
}

// ----------------------------------------------------------------------------------------- details, tooltip

function resetDetails() {
  const details = $("details");
  clear(details);
  details.append(el("p", { class: "muted", text: "Hover a token to see its strongest interactions." }));
}

function showDetails(side, index) {
  hideTooltip();
  const prepared = state.shown?.prepared;
  if (!prepared) return;
  const labels = side === "a" ? prepared.labelsA : prepared.labelsB;
  const sum = side === "a" ? prepared.rowSums[index] : prepared.columnSums[index];
  const top = partners(prepared, side, index, 8);
  const strongest = Math.max(1e-30, ...top.map((p) => Math.abs(p.v)));
  const details = $("details");
  clear(details);
  details.dataset.side = side;
  details.dataset.index = String(index);
  const share = prepared.totalAbs ? Math.abs(sum) / prepared.totalAbs : 0;
  details.append(
    el("h3", {}, [
      el("span", { class: "side", text: side.toUpperCase() }),
      el("span", { class: "token-name", text: labels[index] }),
    ]),
    el("p", { class: "muted", text: `total R ${signed(sum)} · ${percent(share)} of Σ|R|` }),
  );
  const list = el("ol", { class: "partners" });
  for (const p of top) {
    const width = (100 * Math.abs(p.v)) / strongest;
    const bar = el("span", { class: `bar ${p.v > 0 ? "positive" : "negative"}`, style: `width:${width}%` });
    list.append(el("li", {}, [
      el("span", { class: "partner-label", text: p.label, title: p.label }),
      el("span", { class: "bar-track" }, [bar]),
      el("span", { class: "value", text: signed(p.v) }),
    ]));
  }
  if (!top.length) list.append(el("li", { class: "muted", text: "no non-zero interactions" }));
  const other = side === "a" ? "B" : "A";
  details.append(el("p", { class: "label", text: `strongest interactions with text ${other}` }), list);
}

function showPairTip(pair, event) {
  const prepared = state.shown?.prepared;
  if (!prepared) return;
  const tip = $("tooltip");
  clear(tip);
  const share = prepared.totalAbs > 0 ? Math.abs(pair.v) / prepared.totalAbs : 0;
  const sign = pair.v >= 0 ? "positive" : "negative";
  tip.append(
    el("div", { class: "tip-pair" }, [
      el("span", { text: prepared.labelsA[pair.i] }),
      el("span", { class: "muted", text: " ↔ " }),
      el("span", { text: prepared.labelsB[pair.j] }),
    ]),
    el("div", { class: `tip-value ${sign}`, text: `R ${signed(pair.v)} · ${percent(share)} of Σ|R|` }),
  );
  tip.hidden = false;
  moveTooltip(event);
}

function moveTooltip(event) {
  const tip = $("tooltip");
  if (tip.hidden || !event) return;
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const below = event.clientY + 16;
  const y = below + tip.offsetHeight > window.innerHeight ? event.clientY - tip.offsetHeight - 10 : below;
  tip.style.left = `${Math.max(4, x)}px`;
  tip.style.top = `${Math.max(4, y)}px`;
}

function hideTooltip() {
  $("tooltip").hidden = true;
}

// ------------------------------------------------------------------------------------------------ downloads

async function downloadShown(format) {
  const shown = state.shown;
  if (!shown) return;
  const kind = state.view === "heatmap" ? "heatmap" : "pairs";
  const button = $(`download-${format}`);
  button.disabled = true;
  // the server draws exactly what is shown: /api/figure explains the request again (cached), a search result
  // comes from /api/rank/figure (the index's factors, prompt, rules and storage dtype)
  const target = shown.download || { path: "/api/figure", body: shown.request, name: "explanation" };
  try {
    await download(target.path, { ...target.body, kind, format }, `${target.name}.${format}`);
  } catch (error) {
    showError(`download failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// --------------------------------------------------------------------------------------------------- wiring

function setView(view) {
  if (state.view === view) return;
  state.view = view;
  hideTooltip();
  render();
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function wire() {
  $("explain").addEventListener("click", explain);
  for (const id of ["text-a", "text-b"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        explain();
      }
    });
  }
  $("view-pairs").addEventListener("click", () => setView("pairs"));
  $("view-heatmap").addEventListener("click", () => setView("heatmap"));
  $("pair-count").addEventListener("input", () => {
    $("pair-count-value").textContent = $("pair-count").value;
    if (state.view === "pairs") render();
  });
  $("sign").addEventListener("change", render);
  for (const id of ["granularity", "method", "model"]) {
    $(id).addEventListener("change", () => state.shown?.source === "explain" && explain());
  }
  for (const format of ["png", "svg", "json"]) {
    $(`download-${format}`).addEventListener("click", () => downloadShown(format));
  }
  let width = window.innerWidth;
  window.addEventListener("resize", debounce(() => {
    if (window.innerWidth !== width) render();
    width = window.innerWidth;
  }, 150));
}

async function start() {
  wire();
  try {
    applyHealth(await getJSON("/api/health"));
  } catch (error) {
    $("server-info").textContent = "server not reachable";
    showError(error.message);
  }
}

start();
