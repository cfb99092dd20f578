// Building pages without ever parsing a string from the store as HTML: every value goes in
// through textContent or an attribute, so '<script>' in a parameter is shown, never run.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "value") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : Number(v.toPrecision(4)).toString();
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

export function delta(v) {
  if (v === null || v === undefined || typeof v !== "number") return "–";
  const s = Number(v.toPrecision(4));
  return (s > 0 ? "+" : "") + s;
}

export function when(stamp) {
  return stamp ? String(stamp).slice(0, 19).replace("T", " ") : "–";
}

export function short(text, n = 8) {
  return text ? String(text).slice(0, n) : "–";
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

// hash routes carry references as path parts: escape them once here
export const enc = encodeURIComponent;

export function table(headers, rows, attrs = {}) {
  return h("table", attrs,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

export function section(title, ...content) {
  return h("section", {}, h("h2", {}, title), ...content);
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

export function statusBadge(status) {
  const kind = { succeeded: "ok", healthy: "ok", passed: "ok", failed: "bad", gate_failed: "bad",
    validation_failed: "bad", rolled_back: "bad", running: "warn", in_progress: "warn" }[status];
  return badge(status, kind);
}

export class ApiError extends Error {}

export async function api(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  let body;
  try { body = await r.json(); } catch { body = { error: `${r.status} ${r.statusText}` }; }
  if (!r.ok) throw new ApiError(body.error || `${r.status}`);
  return body;
}

export function show(...nodes) {
  const page = document.getElementById("page");
  page.replaceChildren(...nodes.flat().filter(Boolean));
}

export function failure(message) {
  return h("div", { class: "error", role: "alert" }, message);
}

export function empty(text) {
  return h("p", { class: "muted" }, text);
}
