// One run or model version: everything `cd4ml show REF --json` gives.
import { api, badge, delta, empty, enc, failure, fmt, h, link, section, show, statusBadge, table, when } from "./dom.js";

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v instanceof Node ? v : fmt(v))]));
}

function gateSection(gate) {
  if (!gate) return section("Gate", empty("not gated"));
  const rows = gate.rules.map((o) => [o.rule, fmt(o.observed), fmt(o.threshold), fmt(o.baseline),
    o.passed ? badge("pass", "ok") : badge("FAIL", "bad"), o.reason || ""]);
  return section("Gate",
    gate.overridden ? h("p", { class: "override", role: "note" },
      `OVERRIDDEN by ${gate.override_by}: ${gate.override_reason}`) : null,
    h("p", {}, `gate ${gate.passed ? "passed" : "failed"} → `, badge(gate.blessed ? "blessed" : "not blessed", gate.blessed ? "ok" : "bad")),
    table(["rule", "observed", "threshold", "production", "result", "reason"], rows, { id: "gate" }));
}

function validationSection(v) {
  if (!v) return section("Validation", empty("no validation recorded"));
  const expectations = table(["expectation", "column", "result", "observed", "unexpected examples"],
    v.expectations.map((e) => [e.expectation, e.column || "–", e.success ? badge("pass", "ok") : badge("FAIL", "bad"),
      fmt(e.observed), (e.unexpected_examples || []).map(fmt).join(", ") || "–"]), { id: "expectations" });
  const drift = v.drift.length
    ? table(["feature", "method", "statistic", "threshold", "drifted"], v.drift.map((d) =>
      [d.feature, d.method, fmt(d.statistic), fmt(d.threshold), d.drifted ? badge("DRIFT", "bad") : badge("no", "ok")]), { id: "drift" })
    : empty(v.baseline_version ? "no drift measured" : "no production model to compare with: drift not measured");
  return section("Validation",
    h("p", {}, `suite ${v.suite || "–"}: `, v.success ? badge("passed", "ok") : badge("failed", "bad")),
    expectations, h("h3", {}, "Drift per feature"), drift);
}

function metricsSection(metrics) {
  if (!metrics.length) return section("Metrics", empty("no metrics recorded"));
  const prod = metrics.find((m) => m.production_version)?.production_version;
  return section("Metrics", table(["metric", "rows", "candidate", prod ? `production (v${prod})` : "production", "delta"],
    metrics.map((m) => [m.name, m.slice ? `${m.slice}=${m.slice_value}` : "all", fmt(m.candidate),
      fmt(m.production), delta(m.delta)]), { id: "metrics" }));
}

// nested parameters ({"model": {"max_depth": 3}}) as model.max_depth, as on the runs page
function flatten(obj, prefix = "") {
  return Object.entries(obj).reduce((out, [k, v]) => (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length
    ? Object.assign(out, flatten(v, `${prefix}${k}.`)) : Object.assign(out, { [`${prefix}${k}`]: v })), {});
}

export async function runPage(ref) {
  let d;
  try { d = await api(`/api/show/${enc(ref)}`); } catch (e) { show(failure(e.message)); return; }
  const r = d.run, src = d.source_run, m = d.model;
  const title = m ? `${m.pipeline}:${m.version}` : `run ${r.id}`;
  const params = Object.entries(flatten(src.params || {})).sort(([a], [b]) => a.localeCompare(b));
  show(
    h("h1", {}, title, " ", statusBadge(r.status)),
    h("p", { class: "actions" },
      m ? link(`#/lineage/${enc(`${m.pipeline}:${m.version}`)}`, "Lineage →", { id: "to-lineage" }) : null,
      m && m.version > 1 ? link(`#/compare/${enc(`${m.pipeline}:${m.version - 1}`)},${enc(`${m.pipeline}:${m.version}`)}`, "Compare with previous →") : null),
    d.cached ? h("p", { class: "note" }, "served from the cache: the results of run ",
      link(`#/run/${enc(src.id)}`, src.id), ", whose inputs were the same") : null,
    r.error ? failure(r.error) : null,
    section("Run", facts([["run", link(`#/run/${enc(r.id)}`, r.id)], ["pipeline", r.pipeline], ["kind", r.kind],
      ["commit", src.git_commit], ["branch", src.branch], ["who", r.actor], ["started", when(r.started_at)],
      ["ended", when(r.ended_at)], ["spec hash", src.spec_hash], ["code hash", src.code_hash],
      ["data", d.dataset ? `${d.dataset.path} (${d.dataset.rows} rows, sha256 ${d.dataset.hash})` : src.data_hash],
      ["tags", Object.keys(r.tags || {}).length ? r.tags : null]])),
    section("Parameters", params.length ? table(["parameter", "value"], params.map(([k, v]) => [k, fmt(v)]), { id: "params" }) : empty("none")),
    metricsSection(d.metrics),
    gateSection(d.gate),
    validationSection(d.validation),
    m ? section("Model", facts([["version", `${m.pipeline}:${m.version}`], ["task", m.task],
      ["blessed", m.blessed], ["bad", m.bad ? badge("BAD: rolled back", "bad") : "no"],
      ["sha256", h("code", {}, m.sha256)], ["artifact", m.artifact_uri],
      ["deployed now", d.deployed.join(", ") || "nowhere"], ["created", when(m.created_at)]]),
      h("h3", {}, "Input signature"), h("pre", { class: "json" }, JSON.stringify(m.signature, null, 2))) : section("Model", empty("no model")),
    section("Images", d.images.length ? table(["reference", "image id", "registry digest", "infra validation", "size MB", "built"],
      d.images.map((i) => [i.reference, fmt(i.image_id), i.digest || "–", statusBadge(i.infra_status),
        i.size_bytes ? (i.size_bytes / 1e6).toFixed(1) : "–", when(i.created_at)]), { id: "images" }) : empty("none built")),
    section("Approvals", d.approvals.length ? table(["environment", "approver", "source", "when"],
      d.approvals.map((a) => [a.environment, a.approver, a.source, when(a.created_at)]), { id: "approvals" }) : empty("none")),
  );
}
