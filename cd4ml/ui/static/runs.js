// The runs page: the team spreadsheet, filtered, sorted and paged by the server.
import { api, badge, empty, enc, failure, fmt, h, link, short, show, statusBadge, when } from "./dom.js";

const COLUMNS_KEY = "cd4ml.runs.hidden";
const SELECTED_KEY = "cd4ml.runs.selected";
const HIDDEN_BY_DEFAULT = new Set(["branch", "kind", "reused_from", "duration_seconds"]);
let chooserOpen = false; // the column chooser stays open while columns are ticked

// the columns a person hid (so that a new metric or parameter shows up by itself)
function hiddenColumns() {
  try {
    const saved = JSON.parse(localStorage.getItem(COLUMNS_KEY));
    if (Array.isArray(saved)) return new Set(saved);
  } catch { /* a damaged setting: the defaults */ }
  return new Set(HIDDEN_BY_DEFAULT);
}

export function selected() {
  try { return JSON.parse(sessionStorage.getItem(SELECTED_KEY)) || []; } catch { return []; }
}

function setSelected(list) {
  sessionStorage.setItem(SELECTED_KEY, JSON.stringify(list));
}

function refOf(row) {
  return row.model_version !== null && row.model_version !== undefined
    ? `${row.pipeline}:${row.model_version}` : row.id;
}

function cell(key, row) {
  const v = key.startsWith("param.") ? row.param_values[key.slice(6)]
    : key.startsWith("metric.") ? row.metrics[key.slice(7)] : row[key];
  switch (key) {
    case "id": return link(`#/run/${enc(row.id)}`, row.id, { class: "mono", "data-run": row.id });
    case "started_at": return when(v);
    case "git_commit": return h("span", { class: "mono", title: v || "" }, short(v));
    case "model_version":
      return v === null || v === undefined ? "–" : link(`#/model/${enc(refOf(row))}`, `v${v}`);
    case "status": return statusBadge(v);
    case "blessed": return v === null || v === undefined ? "–" : badge(v ? "blessed" : "no", v ? "ok" : "");
    case "reused_from": return v ? link(`#/run/${enc(v)}`, v, { class: "mono" }) : "–";
    default: return fmt(v);
  }
}

export async function runsPage(params) {
  const q = new URLSearchParams(params);
  let data;
  try {
    data = await api(`/api/runs?${q}`);
  } catch (e) {
    show(failure(e.message));
    return;
  }
  const fixed = data.columns.fixed.map((c) => c.key);
  const titles = Object.fromEntries(data.columns.fixed.map((c) => [c.key, c.title]));
  const all = [...fixed, ...data.columns.metrics.map((m) => `metric.${m}`),
    ...data.columns.params.map((p) => `param.${p}`)];
  const hidden = hiddenColumns();
  const shown = all.filter((k) => !hidden.has(k));
  const title = (k) => titles[k] || k.replace(/^param\./, "").replace(/^metric\./, "");
  const go = (changes) => {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) {
      if (v === "" || v === null || v === undefined) next.delete(k); else next.set(k, v);
    }
    if (!("page" in changes)) next.delete("page");
    location.hash = `#/runs?${next}`;
  };
  const choose = (name, options, label) => h("label", {}, label + " ",
    h("select", { name, onchange: (e) => go({ [name]: e.target.value }) },
      h("option", { value: "" }, "any"),
      options.map((o) => h("option", { value: o, selected: q.get(name) === o }, o))));
  const search = h("input", { type: "search", name: "q", placeholder: "run, commit, who, param…", value: q.get("q") || "" });
  const filters = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); go({ q: search.value }); } },
    choose("pipeline", data.pipelines, "pipeline"),
    choose("status", data.statuses, "status"),
    choose("blessed", ["yes", "no"], "blessed"),
    search, h("button", { type: "submit" }, "Filter"));

  const chooser = h("details", { class: "columns", open: chooserOpen, ontoggle: (e) => { chooserOpen = e.target.open; } },
    h("summary", {}, "Columns"),
    h("div", {}, all.map((k) => h("label", {},
      h("input", { type: "checkbox", checked: !hidden.has(k), "data-column": k, onchange: (e) => {
        if (e.target.checked) hidden.delete(k); else hidden.add(k);
        localStorage.setItem(COLUMNS_KEY, JSON.stringify([...hidden]));
        runsPage(params);
      } }), " " + (k.includes(".") ? k : title(k))))));

  const csv = new URLSearchParams(q);
  csv.delete("page"); csv.delete("per_page");
  csv.set("columns", shown.join(","));
  const picked = new Set(selected());
  const compareButton = h("button", { id: "compare", disabled: picked.size < 2, onclick: () => {
    location.hash = `#/compare/${[...picked].map(enc).join(",")}`;
  } }, `Compare selected (${picked.size})`);
  const clear = h("button", { class: "link", onclick: () => { setSelected([]); runsPage(params); } }, "clear");

  const sortBy = (k) => go({ sort: k, order: data.sort === k && data.order === "desc" ? "asc" : "desc" });
  const head = h("tr", {}, h("th", {}, ""), shown.map((k) => h("th", {
    class: "sortable" + (data.sort === k ? ` sorted ${data.order}` : ""), "data-sort": k,
    title: `sort by ${title(k)}`, onclick: () => sortBy(k),
  }, title(k), data.sort === k ? (data.order === "desc" ? " ▾" : " ▴") : "")));
  const body = data.rows.map((row) => {
    const ref = refOf(row);
    return h("tr", { "data-ref": ref },
      h("td", {}, h("input", { type: "checkbox", "aria-label": `select ${ref}`, checked: picked.has(ref), onchange: (e) => {
        if (e.target.checked) picked.add(ref); else picked.delete(ref);
        setSelected([...picked]);
        compareButton.disabled = picked.size < 2;
        compareButton.textContent = `Compare selected (${picked.size})`;
      } })),
      shown.map((k) => {
        const c = cell(k, row);
        return h("td", { "data-column": k, title: c instanceof Node ? null : c }, c);
      }));
  });
  const pages = Math.max(1, Math.ceil(data.total / data.per_page));
  const pager = h("div", { class: "pager" },
    h("button", { disabled: data.page <= 1, onclick: () => go({ page: data.page - 1 }) }, "‹ newer"),
    h("span", { id: "count" }, `${data.total} of ${data.all} runs · page ${data.page} of ${pages}`),
    h("button", { disabled: data.page >= pages, onclick: () => go({ page: data.page + 1 }) }, "older ›"));

  show(h("h1", {}, "Runs"), filters,
    h("div", { class: "toolbar" }, chooser, compareButton, clear,
      h("a", { href: `/api/runs.csv?${csv}`, download: "cd4ml-runs.csv", id: "csv" }, "Export CSV")),
    data.rows.length ? h("div", { class: "scroll" }, h("table", { id: "runs", class: "grid" }, h("thead", {}, head), h("tbody", {}, body)))
      : empty("no runs match"),
    pager);
}
