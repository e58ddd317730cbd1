// A tiny DOM builder: h("tag", {attrs, onclick: fn}, ...children). Text is always set as
// text (never parsed as HTML), so nothing from the API can inject markup.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "value") {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function timeEl(iso) {
  return iso ? h("time", { datetime: iso, title: iso }, fmtTime(iso)) : "—";
}

// 3725 -> "1 h 2 min"; negative -> "overdue 1 h 2 min".
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const sign = seconds < 0 ? "overdue " : "";
  let s = Math.abs(Math.round(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const parts = [];
  if (d) parts.push(`${d} d`);
  if (hr) parts.push(`${hr} h`);
  if (m && !d) parts.push(`${m} min`);
  if (!d && !hr) parts.push(`${s} s`);
  return sign + parts.join(" ");
}

export function label(value) {
  return String(value ?? "").replaceAll("_", " ").toLowerCase();
}

export function badge(kind, value) {
  return h("span", { class: `badge ${kind}-${String(value).toLowerCase()}` }, label(value));
}

export function slaBadge(sla) {
  const state = sla?.state ?? "compliant";
  return h("span", { class: `badge sla-${state}`, title: `SLA ${state}` }, `SLA ${state}`);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
