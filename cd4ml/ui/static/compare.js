// Two or more versions side by side (every delta against the first), and each metric of the
// pipeline across its versions with the gate's lines, drawn by uPlot (interactive: hover, zoom).
import { api, delta, empty, enc, failure, fmt, h, link, section, show, table } from "./dom.js";

function refLink(ref) {
  return link(ref.includes(":") ? `#/model/${enc(ref)}` : `#/run/${enc(ref)}`, ref);
}

function metricTable(d) {
  const key = (m) => `${m.name}\u0000${m.slice}\u0000${m.slice_value}`;
  const rows = new Map();
  d.comparisons.forEach((c, i) => c.metrics.forEach((m) => {
    if (!rows.has(key(m))) rows.set(key(m), { m, a: m.a, others: [] });
    rows.get(key(m)).others[i] = m;
  }));
  const head = ["metric", "rows", d.refs[0]];
  d.refs.slice(1).forEach((r) => head.push(r, `Δ ${r}`));
  const body = [...rows.values()].map(({ m, a, others }) => {
    const cells = [m.name, m.slice ? `${m.slice}=${m.slice_value}` : "all", fmt(a)];
    d.refs.slice(1).forEach((_, i) => {
      const o = others[i];
      const dv = o ? o.delta : null;
      cells.push(fmt(o ? o.b : null), h("span", { class: dv > 0 ? "up" : dv < 0 ? "down" : "" }, delta(dv)));
    });
    return cells;
  });
  return table(head, body, { id: "compare-metrics", class: "grid" });
}

function paramTable(d) {
  const names = [...new Set(d.comparisons.flatMap((c) => c.changed_params))].sort();
  if (!names.length) return empty("parameters: the same");
  const value = (c, name, side) => c.params.find((p) => p.name === name)?.[side];
  return table(["parameter", ...d.refs], names.map((n) => [n, fmt(value(d.comparisons[0], n, "a")),
    ...d.comparisons.map((c) => fmt(value(c, n, "b")))]), { id: "compare-params" });
}

function differences(d) {
  const rows = d.comparisons.flatMap((c) => c.differences.map((x) => [x.what, c.a.ref, fmt(x.a), c.b.ref, fmt(x.b)]));
  return rows.length ? table(["what", "A", "value", "B", "value"], rows) : empty("same commit, data, spec and code");
}

function chart(history, name, picked) {
  const points = history.filter((v) => v.metrics[name] !== undefined);
  if (points.length < 1 || typeof uPlot === "undefined") return null;
  const xs = points.map((v) => v.version);
  const newest = [...history].reverse().find((v) => v.gate_rules.length);
  const lines = (newest ? newest.gate_rules : []).filter((r) => r.metric === name && !r.slice && (r.kind === "min" || r.kind === "max"));
  const seen = new Set();
  const gates = lines.filter((r) => !seen.has(r.rule) && seen.add(r.rule));
  const series = [{ label: "version" },
    { label: name, stroke: "#2563eb", width: 2, points: { size: 7 } },
    ...gates.map((r) => ({ label: `gate ${r.kind} ${r.threshold}`, stroke: "#dc2626", dash: [6, 4], width: 1.5, points: { show: false } }))];
  const data = [xs, points.map((v) => v.metrics[name]), ...gates.map((r) => xs.map(() => r.threshold))];
  const box = h("figure", { class: "chart", "data-metric": name }, h("figcaption", {}, name,
    h("span", { class: "muted" }, ` across ${points.length} version(s); selected: ${picked.join(", ")}`)));
  const opts = { width: 560, height: 240, series, scales: { x: { time: false } },
    axes: [{ label: "version", values: (u, ticks) => ticks.map((t) => Number.isInteger(t) ? `v${t}` : "") }, {}] };
  // drawn once the figure is in the page (uPlot measures its container)
  requestAnimationFrame(() => new uPlot(opts, data, box));
  return box;
}

export async function comparePage(refsText) {
  const refs = refsText.split(",").map(decodeURIComponent).filter(Boolean);
  if (refs.length < 2) {
    show(h("h1", {}, "Compare"), empty("select two or more runs on the Runs page, then Compare"));
    return;
  }
  let d;
  try { d = await api(`/api/compare?${refs.map((r) => `ref=${enc(r)}`).join("&")}`); } catch (e) { show(failure(e.message)); return; }
  const names = [...new Set(d.history.flatMap((v) => Object.keys(v.metrics)))].sort();
  show(h("h1", {}, "Compare ", ...d.refs.flatMap((r, i) => [i ? " · " : "", refLink(r)])),
    h("p", { class: "muted" }, `every Δ is against ${d.refs[0]}`),
    section("Metrics", metricTable(d)),
    section("Parameters that differ", paramTable(d)),
    section("Other differences", differences(d)),
    section(`Metrics of ${d.pipeline} across versions, with the gate lines`,
      h("div", { class: "charts" }, names.map((n) => chart(d.history, n, d.refs)))));
}
