// The search panel (only when `bilrp serve --index` holds a document index): top-k results with their
// explanations, and the "A vs B" contrast of two results.
"use strict";

import { download, getAnswer } from "./api.js";
import { clear, displayToken, el, finite, fixed, isSpecial, signed } from "./util.js";

const $ = (id) => document.getElementById(id);

/** The results of a /api/rank answer, whatever its exact shape: {rank, id, score, text, explanation}. */
export function rankedResults(answer) {
  const records = Array.isArray(answer) ? answer : answer?.results || answer?.explanations || answer?.ranking || [];
  return records.map((record, position) => {
    const explanation = record.explanation || record;
    const id = record.document_id ?? record.id ?? explanation.document_id ?? explanation.id ?? null;
    return {
      rank: record.rank ?? position + 1,
      id: id === null ? null : String(id),
      score: finite(record.score ?? explanation.score),
      text: explanation.text_b ?? record.text ?? "",
      explanation,
    };
  });
}

function snippet(text, size = 180) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > size ? `${flat.slice(0, size - 1)}…` : flat;
}

/** Show `notes` (one-line messages of the server, e.g. a truncated query) in the list `list`. */
function renderNotes(list, notes) {
  clear(list);
  for (const note of notes) list.append(el("li", { text: note }));
  list.hidden = notes.length === 0;
}

/** Wire the search panel; `app` gives {show(explanation, context), showError(message), hideError()}. */
export function initSearch(health, app) {
  const panel = $("search-panel");
  panel.hidden = false;
  const index = health.index || {};
  const parts = [`${index.documents ?? "?"} documents`, index.rules ? `rules ${index.rules}` : null].filter(Boolean);
  $("index-info").textContent = `(${parts.join(", ")})`;
  const maxTopK = health.limits?.max_top_k;
  if (maxTopK) $("top-k").max = String(maxTopK);

  const state = { query: "", results: [], notes: [], picks: { a: null, b: null }, searching: false };

  function setSearching(searching) {
    state.searching = searching;
    $("search").disabled = searching;
    $("contrast").disabled = searching || !(state.picks.a && state.picks.b);
    $("search-busy").hidden = !searching;
  }

  async function search(event) {
    event?.preventDefault();
    if (state.searching) return;
    const query = $("query").value;
    const topK = Math.max(1, Math.min(Number($("top-k").value) || 5, maxTopK || 1000));
    setSearching(true);
    app.hideError();
    try {
      const { data: answer, notes } = await getAnswer("/api/rank", { query, top_k: topK });
      state.query = answer.query ?? query;
      state.results = rankedResults(answer);
      state.notes = notes;
      state.picks = { a: null, b: null };
      renderResults();
      $("contrast-view").hidden = true;
      if (state.results.length) showResult(state.results[0]);
    } catch (error) {
      state.results = [];
      state.notes = [];
      renderResults();
      app.showError(error.message);
    } finally {
      setSearching(false);
    }
  }

  /** Where the files of document `id`'s explanation come from: /api/rank/figure draws what /api/rank gave. */
  function resultDownload(id) {
    return { path: "/api/rank/figure", body: { query: state.query, document_id: id }, name: `ranking-${id}` };
  }

  function showResult(result) {
    for (const item of $("results").children) item.classList.toggle("selected", item.dataset.id === result.id);
    app.show(result.explanation, {
      source: "search",
      download: resultDownload(result.id),
      notes: state.notes,
      requested: "token",
      title: `query vs document ${result.id ?? "?"} (rank ${result.rank})`,
      names: { a: "query", b: `document ${result.id ?? "?"}` },
    });
  }

  function pick(result, side) {
    const other = side === "a" ? "b" : "a";
    state.picks[side] = state.picks[side] === result.id ? null : result.id;
    if (state.picks[other] === state.picks[side]) state.picks[other] = null;
    renderPicks();
  }

  function renderPicks() {
    for (const item of $("results").children) {
      for (const side of ["a", "b"]) {
        const button = item.querySelector(`button[data-pick="${side}"]`);
        button?.setAttribute("aria-pressed", String(state.picks[side] === item.dataset.id));
      }
    }
    const { a, b } = state.picks;
    $("contrast-bar").hidden = state.results.length < 2;
    $("contrast-choice").textContent = a && b
      ? `A: document ${a} · B: document ${b}`
      : "Pick two results as A and B to see why one scores above the other.";
    $("contrast").disabled = state.searching || !(a && b);
  }

  function pickButton(result, side) {
    const label = side.toUpperCase();
    const attributes = { type: "button", "data-pick": side, "aria-pressed": "false", title: `use as ${label}` };
    return el("button", { ...attributes, onclick: () => pick(result, side), text: label });
  }

  function resultItem(result) {
    const main = { type: "button", class: "result-main", "aria-label": `show result ${result.rank}` };
    return el("li", { class: "result-item", dataset: { id: result.id ?? "", rank: String(result.rank) } }, [
      el("button", { ...main, onclick: () => showResult(result) }, [
        el("span", { class: "rank", text: `#${result.rank}` }),
        el("span", { class: "doc-id", text: result.id ?? "–" }),
        el("span", { class: "doc-score", text: fixed(result.score) }),
        el("span", { class: "doc-text", text: snippet(result.text) }),
      ]),
      el("span", { class: "picks" }, [pickButton(result, "a"), pickButton(result, "b")]),
    ]);
  }

  function renderResults() {
    const list = $("results");
    clear(list);
    renderNotes($("search-notes"), state.notes);
    for (const result of state.results) list.append(resultItem(result));
    if (!state.results.length && state.query) list.append(el("li", { class: "muted", text: "no results" }));
    renderPicks();
  }

  async function contrast() {
    const { a, b } = state.picks;
    if (!a || !b || state.searching) return;
    setSearching(true);
    app.hideError();
    try {
      const { data: difference, notes } = await getAnswer("/api/contrast", { query: state.query, a, b });
      renderContrast(difference, a, b, notes);
    } catch (error) {
      $("contrast-view").hidden = true;
      app.showError(error.message);
    } finally {
      setSearching(false);
    }
  }

  function renderContrast(difference, idA, idB, notes) {
    const view = $("contrast-view");
    clear(view);
    view.hidden = false;
    const explanationA = difference.a || difference.explanation_a || {};
    const explanationB = difference.b || difference.explanation_b || {};
    const scoreA = finite(explanationA.score);
    const scoreB = finite(explanationB.score);
    const tokens = difference.tokens || explanationA.tokens_a || [];
    const values = (difference.query_relevance || []).map(finite);
    const total = values.reduce((s, v) => s + v, 0);
    const nameA = `document ${explanationA.id ?? idA}`;
    const nameB = `document ${explanationB.id ?? idB}`;
    view.append(
      el("h3", { text: `Why ${nameA} (A) scores ${scoreA >= scoreB ? "above" : "below"} ${nameB} (B)` }),
      el("p", {
        class: "score",
        id: "contrast-score",
        text: `A ${fixed(scoreA)} − B ${fixed(scoreB)} = ${signed(difference.score ?? scoreA - scoreB)} = ` +
          `Σ query tokens ${signed(total)} + Δbias ${signed(difference.bias)}`,
      }),
      el("p", {
        class: "muted",
        text: "Per query token: how much more it draws from A than from B (red pushes A up, blue pushes B up).",
      }),
    );
    const noteList = el("ul", { class: "notes", id: "contrast-notes", "aria-label": "contrast notes" });
    renderNotes(noteList, notes);
    view.append(noteList);
    const order = values.map((_, i) => i).sort((i, j) => Math.abs(values[j]) - Math.abs(values[i])).slice(0, 10);
    const strongest = Math.max(1e-30, ...order.map((i) => Math.abs(values[i])));
    const list = el("ol", { class: "contrast-list", id: "contrast-list" });
    for (const i of order) {
      list.append(contrastRow(tokens[i] ?? "?", values[i], strongest, i, explanationA, explanationB));
    }
    const show = (explanation, side) => el("button", {
      type: "button",
      onclick: () => showContrastSide(explanation, side),
      text: `show ${side}'s explanation`,
    });
    const actions = el("div", { class: "contrast-actions" }, [show(explanationA, "A"), show(explanationB, "B")]);
    view.append(list, actions, contrastDownloads({ query: state.query, a: idA, b: idB }, notes));
  }

  /** PNG, SVG and JSON buttons of a contrast: /api/contrast/figure draws the /api/contrast answer shown. */
  function contrastDownloads(body, notes) {
    const save = async (button, format) => {
      button.disabled = true;
      try {
        await download("/api/contrast/figure", { ...body, format }, `contrast-${body.a}-vs-${body.b}.${format}`);
      } catch (error) {
        app.showError(`download failed: ${error.message}`);
      } finally {
        button.disabled = false;
      }
    };
    const button = (format) => {
      const attributes = { type: "button", id: `contrast-download-${format}`, "data-format": format };
      const node = el("button", { ...attributes, text: format.toUpperCase() });
      node.addEventListener("click", () => save(node, format));
      return node;
    };
    const title = notes.length ? "the files of this contrast (see its notes)" : "the files of this contrast";
    return el("div", { class: "downloads contrast-downloads", "aria-label": "contrast downloads", title }, [
      el("span", { class: "muted", text: "Download the contrast" }),
      button("png"),
      button("svg"),
      button("json"),
    ]);
  }

  function contrastRow(token, v, strongest, i, explanationA, explanationB) {
    const width = (50 * Math.abs(v)) / strongest;
    const left = v >= 0 ? 50 : 50 - width;
    const sign = v >= 0 ? "positive" : "negative";
    const bar = el("span", { class: `bar ${sign}`, style: `left:${left}%;width:${width}%` });
    return el("li", { dataset: { index: String(i) } }, [
      el("span", { class: isSpecial(token) ? "token-name special" : "token-name", text: displayToken(token) }),
      el("span", { class: "diverging-track" }, [bar]),
      el("span", { class: "value", text: signed(v) }),
      el("span", { class: "muted partners-ab", text: strongestPartners(explanationA, explanationB, i) }),
    ]);
  }

  function strongestPartners(explanationA, explanationB, i) {
    const best = (explanation) => {
      const row = (explanation.relevance || [])[i] || [];
      let top = -1;
      row.forEach((v, j) => {
        if (top < 0 || Math.abs(finite(v)) > Math.abs(finite(row[top]))) top = j;
      });
      return top < 0 ? "–" : `${displayToken((explanation.tokens_b || [])[top] ?? "?")} ${signed(row[top])}`;
    };
    return `A: ${best(explanationA)} · B: ${best(explanationB)}`;
  }

  function showContrastSide(explanation, side) {
    const id = String(explanation.id ?? explanation.document_id);
    const result = state.results.find((r) => r.id === id);
    if (result) showResult(result);
    else {
      app.show(explanation, {
        source: "search",
        download: resultDownload(id),
        notes: state.notes,
        requested: "token",
        title: `contrast: document ${id} (${side})`,
        names: { a: "query", b: `document ${id}` },
      });
    }
  }

  $("search-form").addEventListener("submit", search);
  $("contrast").addEventListener("click", contrast);
}
