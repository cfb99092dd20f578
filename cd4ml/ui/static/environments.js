// What runs where, whether it answers, and who deployed, promoted, rolled back or approved what.
import { api, badge, empty, enc, failure, fmt, h, link, section, show, statusBadge, table, when } from "./dom.js";

function health(s) {
  if (s.version === null || s.version === undefined) return badge("nothing deployed", "");
  if (s.healthy === null || s.healthy === undefined) return badge(s.health, "");
  return s.healthy ? badge("healthy", "ok") : badge(`DOWN (${s.health})`, "bad");
}

function monitoringTable(rows) {
  if (rows === null || rows === undefined) return h("span", { class: "muted" }, "no monitoring recorded (cd4ml monitor)");
  if (!rows.length) return h("span", { class: "muted" }, "no findings yet");
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return table(cols, rows.map((r) => cols.map((c) => fmt(r[c]))));
}

function pipelineSection(p) {
  const ref = (v) => `${p.pipeline}:${v}`;
  const now = table(["environment", "target", "version", "image", "since", "by", "health"], p.status.map((s) => [
    s.environment, s.target,
    s.version ? link(`#/model/${enc(ref(s.version))}`, ref(s.version) + (s.model_bad ? " (bad)" : "")) : "–",
    s.image || "–", when(s.since), s.actor || "–",
    s.deployment_id ? link(`#/deployment/${s.deployment_id}`, health(s)) : health(s)]), { class: "grid", "data-pipeline": p.pipeline });
  const past = p.history.length ? table(["#", "when", "environment", "action", "version", "status", "by", "why"], p.history.map((x) => [
    link(`#/deployment/${x.id}`, `#${x.id}`, { "data-deployment": x.id }), when(x.started_at), x.environment, x.action,
    link(`#/model/${enc(ref(x.version))}`, ref(x.version)), [statusBadge(x.status), x.current ? " current" : ""],
    x.actor || "–", x.error || x.reason || "–"]), { class: "grid history" }) : empty("no deployments");
  const approvals = p.approvals.length ? table(["when", "environment", "version", "approver", "source"], p.approvals.map((a) => [
    when(a.created_at), a.environment, link(`#/model/${enc(ref(a.version))}`, ref(a.version)), a.approver, a.source]), { class: "grid" })
    : empty("no approvals recorded");
  const monitoring = Object.entries(p.monitoring);
  return h("section", { class: "pipeline" }, h("h2", {}, p.pipeline),
    p.spec_found ? null : h("p", { class: "muted" }, "no spec for this pipeline in this repository: health is not probed"),
    now,
    h("h3", {}, "Monitoring"), monitoring.some(([, rows]) => rows !== null && rows !== undefined)
      ? monitoring.map(([env, rows]) => h("div", {}, h("h4", {}, env), monitoringTable(rows)))
      : empty("no monitoring recorded for these environments (cd4ml monitor records it)"),
    h("h3", {}, "History: deploys, promotions, rollbacks"), past,
    h("h3", {}, "Approvals"), approvals);
}

export async function environmentsPage() {
  let data;
  try { data = await api("/api/environments?probe=1"); } catch (e) { show(failure(e.message)); return; }
  show(h("h1", {}, "Environments"), data.length ? data.map(pipelineSection) : empty("nothing deployed yet"));
}
