import { all } from "../api.js";
import { badge, h, link, mount, pct, table, when } from "../dom.js";

export async function datasetsPage(view) {
  const rows = await all("/v1/datasets");
  if (!view.alive()) return;
  mount(view.root, h("h1", {}, "Datasets"), rows.length ? table([
    ["name", (d) => d.name], ["items", (d) => d.num_items], ["format", (d) => d.format],
    ["id", (d) => h("span", { class: "mono" }, d.id)], ["created", (d) => when(d.created_at)],
  ], rows) : h("p", { class: "muted" }, "No datasets yet."));
}

export async function jobsPage(view) {
  const rows = await all("/v1/jobs", {}, 200);
  if (!view.alive()) return;
  mount(view.root, h("h1", {}, "Jobs"), rows.length ? table([
    ["job", (j) => link(`#/jobs/${j.id}`, j.id.slice(0, 8))], ["status", (j) => badge(j.status)],
    ["progress", (j) => `${j.counts.completed + j.counts.failed}/${j.counts.total}`],
    ["initial → refined accuracy", (j) => `${pct(j.quality.initial_accuracy)} → ${pct(j.quality.refined_accuracy)}`],
    ["failed", (j) => j.counts.failed], ["created", (j) => when(j.created_at)],
  ], rows) : h("p", { class: "muted" }, "No jobs yet."));
}

export async function snapshotsPage(view) {
  const rows = await all("/v1/snapshots", {}, 200);
  if (!view.alive()) return;
  mount(view.root, h("h1", {}, "Snapshots"), rows.length ? table([
    ["snapshot", (s) => link(`#/snapshots/${s.id}`, s.name || s.id.slice(0, 8))],
    ["status", (s) => badge(s.status)], ["rows", (s) => s.num_items],
    ["train / validation", (s) => `${s.stats.train ?? "–"} / ${s.stats.val ?? "–"}`],
    ["created", (s) => when(s.created_at)],
  ], rows) : h("p", { class: "muted" }, "No snapshots yet."));
}

export async function runsPage(view) {
  const rows = await all("/v1/training-runs", {}, 200);
  if (!view.alive()) return;
  mount(view.root, h("h1", {}, "Training runs"), rows.length ? table([
    ["run", (r) => link(`#/runs/${r.id}`, r.id.slice(0, 8))], ["status", (r) => badge(r.status)],
    ["progress", (r) => pct(r.progress)], ["step", (r) => (r.metrics || {}).step ?? "–"],
    ["loss", (r) => (r.metrics || {}).loss?.toFixed?.(4) ?? "–"],
    ["base model", (r) => (r.spec || {}).base_model], ["created", (r) => when(r.created_at)],
  ], rows) : h("p", { class: "muted" }, "No training runs yet."));
}
