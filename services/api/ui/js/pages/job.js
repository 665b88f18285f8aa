// A job: live progress (polled while it runs), quality numbers, and the triplet browser.

import { api } from "../api.js";
import { badge, card, duration, h, mark, mount, renderMath, table, when } from "../dom.js";
import { qualityTable } from "./quality.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const POLL_MS = 1000;

export async function jobPage(view, jobId) {
  const status = h("div", { id: "job-status" });
  const browser = h("div", { id: "triplets" });
  mount(view.root, h("h1", {}, "Job ", h("span", { class: "mono" }, jobId)), status,
    h("h2", {}, "Triplets"), browser);
  let job = await api(`/v1/jobs/${jobId}`);
  if (!view.alive()) return;
  renderStatus(status, job);
  const triplets = tripletBrowser(browser, jobId);
  let polls = 0;
  while (!TERMINAL.has(job.status)) {
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    if (!view.alive()) return;
    job = await api(`/v1/jobs/${jobId}`);
    if (!view.alive()) return;
    renderStatus(status, job);
    // The list follows the job too: every 10 polls while it runs, and once when it ends.
    if (TERMINAL.has(job.status) || ++polls % 10 === 0) triplets.reload();
  }
}

function renderStatus(root, job) {
  const c = job.counts;
  const done = c.completed + c.failed;
  const errors = Object.entries(job.errors || {});
  mount(root,
    h("p", {}, badge(job.status), " ",
      h("progress", { max: c.total || 1, value: done }), " ",
      h("span", { id: "job-done", "data-done": done, "data-total": c.total },
        `${done} / ${c.total} (${Math.round(100 * job.progress)}%)`)),
    h("div", { class: "grid" },
      card("items/s", job.items_per_s), card("ETA", duration(job.eta_s)),
      card("completed", c.completed), card("failed", c.failed), card("truncated", job.truncated),
      card("tokens", (job.tokens.prompt + job.tokens.completion).toLocaleString()),
      card("started", when(job.started_at))),
    h("h2", {}, "Stages"),
    table([["state", (r) => r[0]], ["items", (r) => r[1]]], Object.entries(job.by_stage)),
    h("h2", {}, "Errors by kind"),
    errors.length
      ? table([["kind", (r) => r[0]], ["items", (r) => r[1]]], errors)
      : h("p", { class: "muted" }, "No failed items."),
    job.error ? h("p", { class: "error" }, job.error) : null,
    h("h2", {}, "Quality"), qualityTable(job.quality));
}

function select(name, options) {
  return h("label", {}, `${name} `, h("select", { name },
    options.map(([value, text]) => h("option", { value }, text))));
}

function tripletBrowser(root, jobId) {
  const bool = [["", "any"], ["true", "correct"], ["false", "wrong"]];
  const filters = h("form", { class: "filters", id: "triplet-filters" },
    select("verdict", [["", "any"], ["right", "right"], ["wrong", "wrong"], ["none", "none"]]),
    select("initial_correct", bool), select("refined_correct", bool),
    select("status", [["", "any"], ["verified", "verified"], ["failed", "failed"], ["pending", "pending"]]));
  const list = h("div", { id: "triplet-list" });
  const detail = h("div", { id: "triplet-detail" });
  mount(root, filters, detail, list);
  let cursor = null;
  let rows = [];

  async function load(reset) {
    const params = Object.fromEntries(new FormData(filters));
    if (reset) [cursor, rows] = [null, []];
    const page = await api(`/v1/jobs/${jobId}/triplets`, { ...params, limit: 50, cursor });
    rows = rows.concat(page.data);
    cursor = page.next_cursor;
    const t = table([
      ["#", (t) => `${t.idx}.${t.sample}`], ["status", (t) => t.status],
      ["verdict", (t) => t.verdict ?? "none"], ["initial", (t) => mark(t.initial_correct)],
      ["refined", (t) => mark(t.refined_correct)],
      ["question", (t) => t.prompt.length > 90 ? `${t.prompt.slice(0, 90)}…` : t.prompt],
    ], rows, (t) => showTriplet(detail, t));
    mount(list, rows.length ? t : h("p", { class: "muted" }, "No triplets match."),
      cursor ? h("button", { type: "button", onclick: () => load(false) }, "Load more") : null);
  }
  filters.addEventListener("change", () => load(true));
  load(true);
  return { reload: () => load(true) };
}

function panel(title, extra, text, id) {
  return h("section", { id },
    h("h3", {}, h("span", {}, title), extra),
    h("div", { class: "text tex" }, text ?? "—"));
}

function showTriplet(root, t) {
  const agree = t.verdict_agrees === null ? "" : t.verdict_agrees ? "agrees with the verifier" : "disagrees with the verifier";
  mount(root,
    h("h2", {}, `Triplet ${t.item_id} (sample ${t.sample})`),
    h("div", { class: "triplet" },
      panel("Question", null, t.prompt, "t-question"),
      panel("Initial answer", mark(t.initial_correct), t.initial_response, "t-initial"),
      panel("Critique", h("span", { class: t.verdict === "wrong" ? "bad" : "muted" }, `verdict: ${t.verdict ?? "none"}`),
        t.critique, "t-critique"),
      panel("Refined answer", mark(t.refined_correct), t.refined_response, "t-refined")),
    h("p", { class: "muted" },
      `Reference: ${t.reference ?? "—"} · extracted: initial ${t.initial_answer ?? "—"}, refined ${t.refined_answer ?? "—"}`,
      agree ? ` · verdict ${agree}` : "",
      t.error ? ` · error (${t.error_kind}): ${t.error}` : ""));
  renderMath(root);
  root.scrollIntoView({ block: "start" });
}
