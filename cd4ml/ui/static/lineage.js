// Lineage: data → run → model → images → deployments, every node a link; a deployment and
// the predictions it served; a prediction traced back by its request id.
import { api, badge, empty, enc, failure, fmt, h, link, section, short, show, statusBadge, table, when } from "./dom.js";

function node(kind, title, lines, href, attrs = {}) {
  const body = [h("div", { class: "kind" }, kind), h("div", { class: "title" }, title),
    ...lines.filter(Boolean).map((l) => h("div", { class: "line" }, l))];
  return href ? h("a", { class: "node", href, ...attrs }, body) : h("div", { class: "node", ...attrs }, body);
}

export function chain(l, highlight) {
  const m = l.model, r = l.run, d = l.dataset;
  const ref = `${m.pipeline}:${m.version}`;
  const data = node("data", d ? d.path : "data", [`sha256 ${short(d ? d.hash : r.data_hash, 16)}`,
    d ? `${d.rows} rows, ${d.columns.length} columns` : "no data set recorded"], null, { "data-node": "data" });
  const run = node("run", r.id, [r.status, `commit ${short(r.git_commit, 12)} on ${r.branch || "–"}`,
    `by ${r.actor || "–"} at ${when(r.started_at)}`], `#/run/${enc(r.id)}`, { "data-node": "run" });
  const gate = l.gate ? (l.gate.overridden ? `gate OVERRIDDEN by ${l.gate.override_by}` : `gate ${l.gate.passed ? "passed" : "failed"}`) : "not gated";
  const model = node("model", ref, [m.blessed ? "blessed" : "not blessed", m.bad ? "BAD (rolled back)" : null, gate,
    `sha256 ${short(m.sha256, 16)}`], `#/model/${enc(ref)}`, { "data-node": "model" });
  const images = h("div", { class: "stack" }, l.images.length ? l.images.map((i) => node("image", i.reference,
    [`infra ${i.infra_status}`, i.digest ? short(i.digest, 24) : short(i.image_id, 19)], null, { "data-node": "image" }))
    : node("image", "none built", []));
  const deps = h("div", { class: "stack" }, l.deployments.length ? [...l.deployments].reverse().map((x) => node("deployment",
    `${x.environment} #${x.id}`, [`${x.action} · ${x.status}${x.current ? " · CURRENT" : ""}`, `by ${x.actor || "–"} at ${when(x.started_at)}`],
    `#/deployment/${x.id}`, { "data-node": "deployment", "data-deployment": x.id, class: `node${highlight === x.id ? " here" : ""}` }))
    : node("deployment", "none", []));
  const arrow = () => h("div", { class: "arrow" }, "→");
  return h("div", { class: "lineage" }, data, arrow(), run, arrow(), model, arrow(), images, arrow(), deps);
}

export async function lineagePage(ref) {
  let l;
  try { l = await api(`/api/lineage/${enc(ref)}`); } catch (e) { show(failure(e.message)); return; }
  show(h("h1", {}, `Lineage of ${l.ref}`),
    h("p", {}, "serving now: ", l.environments.length ? l.environments.join(", ") : "nowhere"),
    chain(l),
    l.gate && l.gate.overridden ? h("p", { class: "override" }, `gate OVERRIDDEN by ${l.gate.override_by}: ${l.gate.override_reason}`) : null);
}

export async function deploymentPage(id) {
  let d;
  try { d = await api(`/api/deployment/${enc(id)}`); } catch (e) { show(failure(e.message)); return; }
  const x = d.deployment;
  let lin = null;
  try { lin = await api(`/api/lineage/${enc(d.ref)}`); } catch { /* the facts below still stand */ }
  show(h("h1", {}, `Deployment #${x.id}: ${d.ref} to ${x.environment} `, statusBadge(x.status)),
    lin ? chain(lin, x.id) : null,
    section("Deployment", table(["what", "value"], [["environment", x.environment], ["target", x.target],
      ["model", link(`#/model/${enc(d.ref)}`, d.ref)], ["lineage", link(`#/lineage/${enc(d.ref)}`, `lineage of ${d.ref}`)],
      ["action", x.action], ["status", x.status], ["current", x.current ? "yes" : "no"], ["image", x.image_ref],
      ["url", x.url || "–"], ["by", x.actor || "–"], ["why", x.reason || "–"], ["started", when(x.started_at)],
      ["ended", when(x.ended_at)], ["details", fmt(x.details)]])),
    section("Predictions it served (newest first)", d.predictions.length
      ? table(["time", "request id", "inputs", "prediction"], d.predictions.map((p) => [when(p.time),
        link(`#/prediction/${enc(p.request_id)}`, p.request_id, { class: "mono", "data-request": p.request_id }),
        h("span", { class: "clip" }, fmt(p.inputs)), fmt(p.predictions)]), { id: "predictions" })
      : empty("no logged predictions of this version found in this environment's logs")));
}

export async function predictionPage(requestId) {
  let d;
  try { d = await api(`/api/prediction/${enc(requestId)}`); } catch (e) { show(h("h1", {}, `Prediction ${requestId}`), failure(e.message)); return; }
  const p = d.prediction;
  const inputs = Array.isArray(p.inputs) ? p.inputs : [p.inputs];
  const cols = [...new Set(inputs.flatMap((r) => Object.keys(r || {})))];
  const output = p.output !== undefined ? p.output : p.predictions;
  show(h("h1", {}, `Prediction ${p.request_id}`),
    d.sha256_matches === false ? failure(`the server's model sha256 ${p.model_sha256} is not the recorded ${d.lineage.model.sha256}`) : null,
    h("p", {}, `at ${when(p.time)} by `, link(`#/model/${enc(d.lineage.ref)}`, d.lineage.ref, { id: "prediction-model" }),
      ` · found at ${p.log_location}`, d.sha256_matches ? " · " : "", d.sha256_matches ? badge("sha256 matches", "ok") : null),
    section("Inputs", h("div", { class: "scroll" }, table(cols, inputs.map((r) => cols.map((c) => fmt((r || {})[c]))), { id: "inputs", class: "grid" }))),
    section("Output", h("h3", {}, "prediction"), h("pre", { class: "json", id: "output" }, JSON.stringify(output)),
      p.probabilities ? [h("h3", {}, "probabilities"), h("pre", { class: "json" }, JSON.stringify(p.probabilities))] : null),
    section("Where it came from", chain(d.lineage)));
}

export async function modelsPage() {
  let models;
  try { models = await api("/api/models"); } catch (e) { show(failure(e.message)); return; }
  show(h("h1", {}, "Model versions"), models.length ? table(["model", "run", "blessed", "bad", "sha256", "created", "deployed now", ""],
    models.map((m) => [link(`#/model/${enc(m.ref)}`, m.ref), link(`#/run/${enc(m.run_id)}`, m.run_id, { class: "mono" }),
      m.blessed ? badge(m.gate && m.gate.overridden ? `OVERRIDDEN by ${m.gate.override_by}` : "blessed", m.gate && m.gate.overridden ? "warn" : "ok") : "no",
      m.bad ? badge("BAD", "bad") : "", h("span", { class: "mono" }, short(m.sha256, 12)), when(m.created_at),
      m.deployed.join(", ") || "–", link(`#/lineage/${enc(m.ref)}`, "lineage")]), { class: "grid", id: "models" }) : empty("no model versions recorded"));
}
