// Small helpers shared by the explorer's views: token labels, number formats, DOM and SVG construction.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const SPECIAL = /^(\[[A-Za-z_]+\]|<\|?\/?[A-Za-z_]+\|?>)$/;
const WORD_START = /^(##|Ġ|▁)/;

/** Whether a token looks like a tokenizer's special token ([CLS], </s>, <|endoftext|>). */
export function isSpecial(token) {
  return SPECIAL.test(String(token));
}

/** The label shown for a token: WordPiece/BPE/SentencePiece markers dropped, newlines shown as \n. */
export function displayToken(token) {
  const text = String(token).replace(/\n|Ċ/g, "\\n").replace(WORD_START, "").replace(/[Ġ▁]/g, " ");
  return text === "" ? "␣" : text;
}

/** A finite number, or 0 for null / NaN / anything else (the JSON writes NaN as null). */
export function finite(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/** `value` with `digits` significant digits and an explicit sign ("+0.412", "−0.0031"). */
export function signed(value, digits = 3) {
  const v = finite(value);
  if (v === 0) return "0";
  const size = Math.abs(v);
  const text = size >= 1e-3 && size < 1e5 ? String(Number(size.toPrecision(digits))) : size.toExponential(digits - 1);
  return (v > 0 ? "+" : "−") + text;
}

/** `value` with `decimals` decimals ("0.742", "-0.052"; never "-0.000"). */
export function fixed(value, decimals = 3) {
  const text = finite(value).toFixed(decimals);
  return Number(text) === 0 ? text.replace("-", "") : text;
}

/** A percentage without decimals ("7%"). */
export function percent(fraction) {
  return `${Math.round(finite(fraction) * 100)}%`;
}

/** An HTML element with attributes (`class`, `text`, `dataset`, event `on*` handlers) and children. */
export function el(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of [].concat(children)) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** An SVG element with attributes, appended to `parent` when given. */
export function svg(tag, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  if (parent) parent.append(node);
  return node;
}

/** Remove every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

let measureContext = null;

/** The width in pixels of `text` drawn in the CSS `font`. */
export function textWidth(text, font) {
  measureContext = measureContext || document.createElement("canvas").getContext("2d");
  measureContext.font = font;
  return measureContext.measureText(text).width;
}

/** `text` cut (with an ellipsis) to fit in `width` pixels of `font`. */
export function fitText(text, width, font) {
  if (textWidth(text, font) <= width) return text;
  let low = 0;
  let high = text.length;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (textWidth(text.slice(0, middle) + "…", font) <= width) low = middle;
    else high = middle - 1;
  }
  return text.slice(0, Math.max(low, 1)) + "…";
}

/** `text` broken at spaces into at most `lines` lines of `width` pixels (the last one cut with an ellipsis). */
export function wrapText(text, width, font, lines = 2) {
  const words = text.split(/\s+/).filter(Boolean);
  const out = [];
  let current = "";
  while (words.length && out.length < lines - 1) {
    const next = current ? `${current} ${words[0]}` : words[0];
    if (textWidth(next, font) <= width || !current) {
      current = next;
      words.shift();
    } else {
      out.push(current);
      current = "";
    }
  }
  const rest = [current, ...words].filter(Boolean).join(" ");
  if (rest) out.push(fitText(rest, width, font));
  return out.map((line) => fitText(line, width, font));
}

/**
 * The explanation in the form the views draw: readable labels, special-token flags and a dense relevance
 * matrix (null / NaN as 0, missing cells as 0, so a malformed answer never throws).
 */
export function prepare(explanation) {
  const tokensA = (explanation.tokens_a || []).map(String);
  const tokensB = (explanation.tokens_b || []).map(String);
  const rows = Array.isArray(explanation.relevance) ? explanation.relevance : [];
  const relevance = tokensA.map((_, i) => tokensB.map((__, j) => finite((rows[i] || [])[j])));
  let maxAbs = 0;
  let total = 0;
  let totalAbs = 0;
  for (const row of relevance) {
    for (const v of row) {
      maxAbs = Math.max(maxAbs, Math.abs(v));
      total += v;
      totalAbs += Math.abs(v);
    }
  }
  return {
    tokensA,
    tokensB,
    labelsA: tokensA.map(displayToken),
    labelsB: tokensB.map(displayToken),
    specialA: tokensA.map(isSpecial),
    specialB: tokensB.map(isSpecial),
    relevance,
    rowSums: relevance.map((row) => row.reduce((s, v) => s + v, 0)),
    columnSums: tokensB.map((_, j) => relevance.reduce((s, row) => s + row[j], 0)),
    maxAbs,
    total,
    totalAbs,
  };
}

/**
 * The `k` pairs with the largest |R| of the chosen sign ("both", "positive", "negative"), largest first; ties
 * keep the row-major order (A's token, then B's), so the choice is deterministic.
 */
export function topPairs(prepared, k, sign = "both") {
  const pairs = [];
  prepared.relevance.forEach((row, i) =>
    row.forEach((v, j) => {
      if (v === 0 || (sign === "positive" && v < 0) || (sign === "negative" && v > 0)) return;
      pairs.push({ i, j, v });
    }),
  );
  pairs.sort((p, q) => Math.abs(q.v) - Math.abs(p.v));
  return pairs.slice(0, Math.max(0, k));
}

/** The `k` partners of token `index` of `side` ("a" or "b") with the largest |R|: `{index, label, v}`. */
export function partners(prepared, side, index, k = 8) {
  const values = side === "a" ? prepared.relevance[index] || [] : prepared.relevance.map((row) => row[index]);
  const labels = side === "a" ? prepared.labelsB : prepared.labelsA;
  return values
    .map((v, other) => ({ index: other, label: labels[other], v }))
    .filter((p) => p.v !== 0)
    .sort((p, q) => Math.abs(q.v) - Math.abs(p.v))
    .slice(0, k);
}

/** Red for positive, blue for negative, mixed with white by |v| / scale (a symmetric diverging scale). */
export function divergingColor(v, scale) {
  const t = scale > 0 ? Math.min(1, Math.abs(v) / scale) : 0;
  const [r, g, b] = v >= 0 ? [192, 39, 45] : [31, 95, 168];
  const mix = (c) => Math.round(255 + (c - 255) * t);
  return `rgb(${mix(r)},${mix(g)},${mix(b)})`;
}
