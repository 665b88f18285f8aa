// The dashboard: a hash router over the pages; each page renders into #app and may poll
// until the route changes (``view.alive()`` turns false).

import { auth } from "./api.js";
import { h, mount } from "./dom.js";
import { datasetsPage, jobsPage, runsPage, snapshotsPage } from "./pages/lists.js";
import { experimentPage, experimentsPage } from "./pages/experiment.js";
import { jobPage } from "./pages/job.js";
import { runPage } from "./pages/run.js";
import { signinPage } from "./pages/signin.js";
import { snapshotPage } from "./pages/snapshot.js";

const ROUTES = [
  [/^#\/signin$/, signinPage],
  [/^#\/datasets$/, datasetsPage],
  [/^#\/jobs$/, jobsPage],
  [/^#\/jobs\/([\w-]+)$/, jobPage],
  [/^#\/snapshots$/, snapshotsPage],
  [/^#\/snapshots\/([\w-]+)$/, snapshotPage],
  [/^#\/runs$/, runsPage],
  [/^#\/runs\/([\w-]+)$/, runPage],
  [/^#\/experiments$/, experimentsPage],
  [/^#\/experiments\/([\w-]+)$/, experimentPage],
];

let generation = 0;

async function route() {
  const root = document.getElementById("app");
  const hash = window.location.hash || "#/jobs";
  const signedIn = Boolean(auth.get());
  document.body.classList.toggle("signed-out", !signedIn);
  if (!signedIn && hash !== "#/signin") {
    window.location.hash = "#/signin";
    return;
  }
  const mine = ++generation;
  const view = { alive: () => mine === generation, root };
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  }
  for (const [pattern, page] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      try {
        await page(view, ...match.slice(1));
      } catch (err) {
        if (err.status === 401) {
          auth.clear();
          window.location.hash = "#/signin";
          return;
        }
        if (view.alive()) mount(root, h("p", { class: "error", role: "alert" }, String(err.message || err)));
      }
      return;
    }
  }
  mount(root, h("p", { class: "error" }, "No such page."));
}

document.getElementById("signout").addEventListener("click", () => {
  auth.clear();
  window.location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();
