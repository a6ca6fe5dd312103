// The pair view: tokens of A in a column on the left, tokens of B on the right, curves joining the top pairs.
"use strict";

import { clear, fitText, svg, textWidth, topPairs, wrapText } from "./util.js";

const PAD = 10;
const HEAD = 30;
const GAP = 8;

function layout(prepared, width, font, headings) {
  const rows = Math.max(prepared.labelsA.length, prepared.labelsB.length, 1);
  // measured in the regular weight; highlighted labels (and the headings) are bold, about a tenth wider
  const all = prepared.labelsA.concat(prepared.labelsB, headings);
  const widest = 1.1 * Math.max(1, ...all.map((label) => textWidth(label, font)));
  const labelWidth = Math.ceil(Math.min(widest, Math.max(60, Math.min(360, width * 0.33)))) + 4;
  // few long labels (sentences) get two lines each; many rows get tighter spacing
  const lines = rows <= 24 && widest > labelWidth ? 2 : 1;
  const rowHeight = lines === 2 ? 40 : rows > 60 ? 18 : rows > 30 ? 21 : 26;
  const height = HEAD + rows * rowHeight + PAD;
  const span = rows * rowHeight;
  const y = (count) => (index) => HEAD + ((index + 0.5) * span) / Math.max(count, 1);
  return {
    width,
    height,
    rowHeight,
    labelWidth,
    lines,
    yA: y(prepared.labelsA.length),
    yB: y(prepared.labelsB.length),
    xA: PAD + labelWidth + GAP,
    xB: width - PAD - labelWidth - GAP,
  };
}

function drawTokens(root, side, prepared, geometry, font) {
  const labels = side === "a" ? prepared.labelsA : prepared.labelsB;
  const special = side === "a" ? prepared.specialA : prepared.specialB;
  const tokens = side === "a" ? prepared.tokensA : prepared.tokensB;
  const sums = side === "a" ? prepared.rowSums : prepared.columnSums;
  const position = side === "a" ? geometry.yA : geometry.yB;
  const anchor = side === "a" ? geometry.xA : geometry.xB;
  const textX = side === "a" ? anchor - GAP : anchor + GAP;
  const hitX = side === "a" ? PAD : anchor;
  const group = svg("g", { class: `tokens tokens-${side}` }, root);
  labels.forEach((label, index) => {
    const y = position(index);
    const token = svg("g", {
      class: special[index] ? "token special" : "token",
      "data-side": side,
      "data-index": index,
      "data-token": tokens[index],
      tabindex: 0,
      "aria-label": `text ${side.toUpperCase()} token ${index}: ${label}, total R ${sums[index].toPrecision(3)}`,
    }, group);
    const height = Math.min(geometry.rowHeight, 40);
    svg("rect", { class: "hit", x: hitX, y: y - height / 2, width: geometry.labelWidth + GAP, height }, token);
    const room = geometry.labelWidth;
    const shown = geometry.lines > 1 ? wrapText(label, room, font, geometry.lines) : [fitText(label, room, font)];
    const text = svg("text", { x: textX, y, "text-anchor": side === "a" ? "end" : "start" }, token);
    shown.forEach((line, k) => {
      const dy = k === 0 ? `${-(shown.length - 1) * 0.6}em` : "1.2em";
      svg("tspan", { x: textX, dy: shown.length > 1 ? dy : null, text: line }, text);
    });
    if (shown.length > 1 || shown[0] !== label) svg("title", { text: label }, token);
    svg("circle", { class: "anchor", cx: anchor, cy: y, r: 2.5 }, token);
  });
}

function curve(geometry, pair) {
  const x1 = geometry.xA;
  const x2 = geometry.xB;
  const y1 = geometry.yA(pair.i);
  const y2 = geometry.yB(pair.j);
  const bend = (x2 - x1) * 0.45;
  const f = (n) => n.toFixed(1);
  return `M${f(x1)},${f(y1)} C${f(x1 + bend)},${f(y1)} ${f(x2 - bend)},${f(y2)} ${f(x2)},${f(y2)}`;
}

/**
 * Draw the pair view into `node` (an <svg>) and wire its hover behaviour.
 *
 * options: {k, sign, width}; hooks: {onToken(side, index), onPair(pair, event), onLeave()}.
 * Returns {pairs, highlight(side, index), reset()}.
 */
export function drawPairs(node, prepared, options, hooks = {}) {
  clear(node);
  const style = getComputedStyle(node);
  const font = `${parseFloat(style.fontSize) || 13}px ${style.fontFamily}`;
  const names = { a: "text A", b: "text B", ...options.names };
  const geometry = layout(prepared, Math.max(360, options.width), font, [names.a, names.b]);
  node.setAttribute("width", geometry.width);
  node.setAttribute("height", geometry.height);
  node.setAttribute("viewBox", `0 0 ${geometry.width} ${geometry.height}`);

  svg("text", { class: "heading", x: geometry.xA - GAP, y: 16, "text-anchor": "end", text: names.a }, node);
  svg("text", { class: "heading", x: geometry.xB + GAP, y: 16, text: names.b }, node);

  const pairs = topPairs(prepared, options.k, options.sign);
  const strongest = pairs.reduce((m, p) => Math.max(m, Math.abs(p.v)), 0) || 1;
  const curves = svg("g", { class: "curves" }, node);
  const paths = pairs
    .slice()
    .reverse() // weakest first, so the strongest curves are drawn on top
    .map((pair) => {
      const f = Math.abs(pair.v) / strongest;
      return svg("path", {
        class: pair.v > 0 ? "pair positive" : "pair negative",
        d: curve(geometry, pair),
        "data-i": pair.i,
        "data-j": pair.j,
        "data-r": pair.v,
        "stroke-width": (0.8 + 5.2 * f).toFixed(2),
        "stroke-opacity": (0.18 + 0.82 * f).toFixed(3),
      }, curves);
    });
  drawTokens(node, "a", prepared, geometry, font);
  drawTokens(node, "b", prepared, geometry, font);

  const tokenNode = (side, index) => node.querySelector(`.token[data-side="${side}"][data-index="${index}"]`);

  function reset() {
    node.classList.remove("focused");
    for (const marked of node.querySelectorAll(".highlighted, .partner, .active")) {
      marked.classList.remove("highlighted", "partner", "active");
    }
  }

  function highlight(side, index) {
    reset();
    node.classList.add("focused");
    tokenNode(side, index)?.classList.add("active");
    for (const path of paths) {
      const i = Number(path.dataset.i);
      const j = Number(path.dataset.j);
      if ((side === "a" ? i : j) !== index) continue;
      path.classList.add("highlighted");
      tokenNode(side === "a" ? "b" : "a", side === "a" ? j : i)?.classList.add("partner");
    }
  }

  function highlightPair(path) {
    reset();
    node.classList.add("focused");
    path.classList.add("highlighted");
    tokenNode("a", path.dataset.i)?.classList.add("active");
    tokenNode("b", path.dataset.j)?.classList.add("active");
  }

  const tokenOf = (target) => target.closest?.(".token");
  const enterToken = (token) => {
    const side = token.dataset.side;
    const index = Number(token.dataset.index);
    highlight(side, index);
    hooks.onToken?.(side, index);
  };
  node.onmouseover = (event) => {
    const token = tokenOf(event.target);
    if (token) return enterToken(token);
    if (event.target.classList?.contains("pair")) {
      highlightPair(event.target);
      const { i, j, r } = event.target.dataset;
      hooks.onPair?.({ i: Number(i), j: Number(j), v: Number(r) }, event);
    }
  };
  node.onmousemove = (event) => {
    if (event.target.classList?.contains("pair")) hooks.onPairMove?.(event);
  };
  node.onmouseout = (event) => {
    if (!node.contains(event.relatedTarget) || event.relatedTarget === node) {
      reset();
      hooks.onLeave?.();
    } else if (event.target.classList?.contains("pair")) hooks.onLeave?.();
  };
  node.onfocusin = (event) => {
    const token = tokenOf(event.target);
    if (token) enterToken(token);
  };
  node.onfocusout = () => reset();
  return { pairs, highlight, reset };
}
