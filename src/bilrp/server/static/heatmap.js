// The heatmap view: one cell per token pair (rows: text A, columns: text B), a diverging red/blue scale.
"use strict";

import { clear, divergingColor, fitText, svg, textWidth } from "./util.js";

const PAD = 8;
const MAX_LABEL = 200;

function layout(prepared, width, family) {
  const n = Math.max(prepared.labelsA.length, 1);
  const m = Math.max(prepared.labelsB.length, 1);
  const probe = `12px ${family}`;
  const widest = (labels) => Math.min(MAX_LABEL, Math.max(10, ...labels.map((l) => textWidth(l, probe))));
  const rowLabel = widest(prepared.labelsA) + 10;
  const columnLabel = widest(prepared.labelsB);
  // column labels slant at 55 degrees; past ~60 columns the cells are too narrow for that, they stand upright
  const overhangAt = (angle) => columnLabel * Math.cos((angle * Math.PI) / 180);
  const fits = (angle) => Math.floor((width - 2 * PAD - rowLabel - overhangAt(angle)) / m);
  const angle = fits(55) >= 18 ? 55 : 90;
  const radians = (angle * Math.PI) / 180;
  const overhang = overhangAt(angle);
  const cell = Math.max(13, Math.min(46, fits(angle)));
  const fontSize = Math.min(12, cell - 2);
  const top = PAD + columnLabel * Math.sin(radians) + 10;
  const left = PAD + rowLabel;
  return {
    n,
    m,
    angle,
    cell,
    font: `${fontSize}px ${family}`,
    top,
    left,
    rowLabel,
    columnLabel,
    width: Math.ceil(left + m * cell + overhang + PAD),
    height: Math.ceil(top + n * cell + PAD),
  };
}

function drawLabels(node, prepared, g) {
  const rows = svg("g", { class: "tokens tokens-a" }, node);
  prepared.labelsA.forEach((label, i) => {
    const y = g.top + (i + 0.5) * g.cell;
    const token = svg("g", {
      class: prepared.specialA[i] ? "token special" : "token",
      "data-side": "a",
      "data-index": i,
      "data-token": prepared.tokensA[i],
      tabindex: 0,
      "aria-label": `row ${i}: ${label}`,
    }, rows);
    svg("rect", { class: "hit", x: PAD, y: y - g.cell / 2, width: g.rowLabel, height: g.cell }, token);
    svg("text", { x: g.left - 6, y, "text-anchor": "end", text: fitText(label, g.rowLabel - 10, g.font) }, token);
  });
  const columns = svg("g", { class: "tokens tokens-b" }, node);
  prepared.labelsB.forEach((label, j) => {
    const x = g.left + (j + 0.5) * g.cell;
    const y = g.top - 6;
    const token = svg("g", {
      class: prepared.specialB[j] ? "token special" : "token",
      "data-side": "b",
      "data-index": j,
      "data-token": prepared.tokensB[j],
      tabindex: 0,
      "aria-label": `column ${j}: ${label}`,
      transform: `rotate(${-g.angle} ${x} ${y})`,
    }, columns);
    svg("rect", { class: "hit", x: x - 2, y: y - g.cell / 2, width: g.columnLabel + 4, height: g.cell }, token);
    svg("text", { x: x + 2, y, text: fitText(label, g.columnLabel, g.font) }, token);
  });
}

/**
 * Draw the heatmap into `node` (an <svg>); hooks as for the pair view ({onToken, onCell, onLeave}).
 * Returns {scale, highlight(side, index), reset()}.
 */
export function drawHeatmap(node, prepared, options, hooks = {}) {
  clear(node);
  const family = getComputedStyle(node).fontFamily;
  const g = layout(prepared, Math.max(320, options.width), family);
  node.setAttribute("width", g.width);
  node.setAttribute("height", g.height);
  node.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
  const scale = prepared.maxAbs;

  const cells = svg("g", { class: "cells" }, node);
  svg("rect", { class: "frame", x: g.left, y: g.top, width: g.m * g.cell, height: g.n * g.cell }, cells);
  prepared.relevance.forEach((row, i) =>
    row.forEach((v, j) => {
      svg("rect", {
        class: "cell",
        x: g.left + j * g.cell,
        y: g.top + i * g.cell,
        width: g.cell,
        height: g.cell,
        fill: divergingColor(v, scale),
        "data-i": i,
        "data-j": j,
        "data-r": v,
      }, cells);
      if (g.cell >= 44 && Math.abs(v) >= 0.005 && Math.abs(v) >= 0.05 * scale) {
        const dark = Math.abs(v) / scale > 0.55;
        const text = (v < 0 ? "−" : "") + Math.abs(v).toFixed(2);
        const x = g.left + (j + 0.5) * g.cell;
        const y = g.top + (i + 0.5) * g.cell;
        svg("text", { class: dark ? "cell-value dark" : "cell-value", x, y, text }, cells);
      }
    }),
  );
  const band = (attributes) => svg("rect", { class: "band", visibility: "hidden", ...attributes }, node);
  const rowBand = band({ x: g.left, width: g.m * g.cell, height: g.cell });
  const columnBand = band({ y: g.top, width: g.cell, height: g.n * g.cell });
  drawLabels(node, prepared, g);

  const label = (side, index) => node.querySelector(`.token[data-side="${side}"][data-index="${index}"]`);

  function reset() {
    node.classList.remove("focused");
    rowBand.setAttribute("visibility", "hidden");
    columnBand.setAttribute("visibility", "hidden");
    node.querySelectorAll(".active").forEach((n) => n.classList.remove("active"));
  }

  function showBand(side, index) {
    const target = side === "a" ? rowBand : columnBand;
    target.setAttribute(side === "a" ? "y" : "x", (side === "a" ? g.top : g.left) + index * g.cell);
    target.setAttribute("visibility", "visible");
    label(side, index)?.classList.add("active");
  }

  function highlight(side, index) {
    reset();
    node.classList.add("focused");
    showBand(side, index);
  }

  node.onmouseover = (event) => {
    const token = event.target.closest?.(".token");
    if (token) {
      highlight(token.dataset.side, Number(token.dataset.index));
      hooks.onToken?.(token.dataset.side, Number(token.dataset.index));
      return;
    }
    if (!event.target.classList?.contains("cell")) return;
    const i = Number(event.target.dataset.i);
    const j = Number(event.target.dataset.j);
    reset();
    node.classList.add("focused");
    showBand("a", i);
    showBand("b", j);
    hooks.onCell?.({ i, j, v: prepared.relevance[i][j] }, event);
  };
  node.onmousemove = (event) => {
    if (event.target.classList?.contains("cell")) hooks.onPairMove?.(event);
  };
  node.onmouseleave = () => {
    reset();
    hooks.onLeave?.();
  };
  node.onfocusin = (event) => {
    const token = event.target.closest?.(".token");
    if (token) highlight(token.dataset.side, Number(token.dataset.index));
  };
  node.onfocusout = () => reset();
  return { scale, highlight, reset };
}
