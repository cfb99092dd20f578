// The router: each page is a hash route, drawn from the JSON API.
import { comparePage } from "./compare.js";
import { environmentsPage } from "./environments.js";
import { deploymentPage, lineagePage, modelsPage, predictionPage } from "./lineage.js";
import { runPage } from "./run.js";
import { runsPage } from "./runs.js";

const ROUTES = [
  [/^#\/runs(?:\?(.*))?$/, (m) => runsPage(m[1] || ""), "runs"],
  [/^#\/run\/([^?]+)$/, (m) => runPage(decodeURIComponent(m[1])), "runs"],
  [/^#\/model\/([^?]+)$/, (m) => runPage(decodeURIComponent(m[1])), "models"],
  [/^#\/models$/, () => modelsPage(), "models"],
  [/^#\/compare\/([^?]*)$/, (m) => comparePage(m[1]), "runs"],
  [/^#\/lineage\/([^?]+)$/, (m) => lineagePage(decodeURIComponent(m[1])), "models"],
  [/^#\/deployment\/(\d+)$/, (m) => deploymentPage(m[1]), "environments"],
  [/^#\/prediction\/([^?]+)$/, (m) => predictionPage(decodeURIComponent(m[1])), "environments"],
  [/^#\/environments$/, () => environmentsPage(), "environments"],
];

async function route() {
  const hash = location.hash || "#/runs";
  for (const [pattern, draw, nav] of ROUTES) {
    const m = hash.match(pattern);
    if (m) {
      document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
      document.body.dataset.loading = "1";
      await draw(m);
      delete document.body.dataset.loading;
      document.body.dataset.page = nav;
      return;
    }
  }
  location.hash = "#/runs";
}

document.getElementById("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = document.getElementById("lookup-id").value.trim();
  if (id) location.hash = `#/prediction/${encodeURIComponent(id)}`;
});
window.addEventListener("hashchange", route);
route();
