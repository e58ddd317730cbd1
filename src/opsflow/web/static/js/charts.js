// Small hand-drawn SVG charts (no library): a bar chart and a line chart, each an
// <svg role="img"> with an accessible label and a <title> per mark.
const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const W = 520;
const H = 220;
const PAD = { left: 44, right: 12, top: 12, bottom: 40 };

function axis(svg, max, unit) {
  const inner = H - PAD.top - PAD.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + inner * (1 - f);
    svg.append(s("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end", class: "tick" }, `${Math.round(max * f * 10) / 10}${unit}`));
  }
}

// items: [{label, value}]
export function barChart(title, items, { unit = "", id } = {}) {
  const max = Math.max(1, ...items.map((i) => i.value ?? 0));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${items.map((i) => `${i.label} ${i.value ?? "none"}${unit}`).join(", ")}`, class: "chart", id });
  axis(svg, max, unit);
  const inner = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / Math.max(1, items.length);
  items.forEach((item, i) => {
    const value = item.value ?? 0;
    const height = (inner * value) / max;
    const x = PAD.left + i * slot + slot * 0.15;
    svg.append(s("rect", { x, y: PAD.top + inner - height, width: slot * 0.7, height, class: `bar ${item.cls || ""}` }, s("title", {}, `${item.label}: ${item.value ?? "none"}${unit}`)));
    svg.append(s("text", { x: x + slot * 0.35, y: H - PAD.bottom + 16, "text-anchor": "middle", class: "tick" }, item.label));
  });
  return svg;
}

// points: [{label, value|null}]
export function lineChart(title, points, { unit = "", max = null, id } = {}) {
  const top = max ?? Math.max(1, ...points.map((p) => p.value ?? 0));
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${title}: ${points.filter((p) => p.value !== null).map((p) => `${p.label} ${p.value}${unit}`).join(", ") || "no data"}`, class: "chart", id });
  axis(svg, top, unit);
  const inner = H - PAD.top - PAD.bottom;
  const step = (W - PAD.left - PAD.right) / Math.max(1, points.length - 1);
  const xy = (i, v) => [PAD.left + i * step, PAD.top + inner - (inner * v) / top];
  let path = "";
  points.forEach((p, i) => {
    if (p.value === null) return;
    const [x, y] = xy(i, p.value);
    path += `${path ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    svg.append(s("circle", { cx: x, cy: y, r: 3, class: "dot" }, s("title", {}, `${p.label}: ${p.value}${unit}`)));
  });
  if (path) svg.prepend(s("path", { d: path, class: "line" }));
  const every = Math.max(1, Math.ceil(points.length / 6));
  points.forEach((p, i) => {
    if (i % every) return;
    svg.append(s("text", { x: xy(i, 0)[0], y: H - PAD.bottom + 16, "text-anchor": "middle", class: "tick" }, p.label));
  });
  return svg;
}
