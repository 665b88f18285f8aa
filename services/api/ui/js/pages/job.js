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
      card("retries", retriesText(job.retries), { id: "job-retries" }),
      card("started", when(job.started_at))),
    h("h2", {}, "Stages"),
    table([["state", (r) => r[0]], ["items", (r) => r[1]]], Object.entries(job.by_stage)),
    h("h2", {}, "Errors by kind"),
    errors.length
      ? table([["kind", (r) => r[0]], ["items", (r) => r[1]]], errors)
      : h("p", { class: "muted" }, "No failed items."),
    job.error ? h("p", { class: "error" }, job.error) : null,
    h("h2", {}, "Quality"),
    h("p", { class: "muted", id: "quality-over" },
      `Over the ${(job.quality.counts || {}).verified ?? 0} items verified so far.`),
    qualityTable(job.quality));
}

function retriesText(retries) {
  if (!retries || !retries.total) return "0";
  const reasons = Object.entries(retries.by_reason).map(([k, n]) => `${k} ${n}`).join(", ");
  return `${retries.total} (${reasons})`;
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
      ["#", (t) => `${t.idx}.${t.sample}`], ["status", itemStatus],
      // A failed item has no verdict to show: "none" would read as a critique without one.
      ["verdict", (t) => (t.status === "failed" ? "–" : t.verdict ?? "none")],
      ["initial", (t) => mark(t.initial_correct)],
      ["refined", (t) => mark(t.refined_correct)],
      ["question", (t) => h("span", { class: "tex" }, clip(t.prompt, 90))],
    ], rows, (t) => showTriplet(detail, t));
    mount(list, rows.length ? t : h("p", { class: "muted" }, "No triplets match."),
      cursor ? h("button", { type: "button", onclick: () => load(false) }, "Load more") : null);
    renderMath(list);
  }
  filters.addEventListener("change", () => load(true));
  load(true);
  return { reload: () => load(true) };
}

// An item's state; a failed one says so with its error kind, in the list itself.
function itemStatus(t) {
  if (t.status !== "failed") return t.status;
  return h("span", { class: "bad", "data-status": "failed", title: t.error ?? "" },
    `failed (${t.error_kind ?? "unknown"})`);
}

// Cut a long question for the list, never inside a LaTeX command or its braces' first level
// (half a \frac{…} would not render): at the last space before the limit.
function clip(text, n) {
  if (text.length <= n) return text;
  const cut = text.lastIndexOf(" ", n);
  return `${text.slice(0, cut > n / 2 ? cut : n)}…`;
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
    h("p", { class: "muted text" },
      "Reference: ", h("span", { id: "t-reference" }, t.reference ?? "—"),
      ` · extracted: initial ${t.initial_answer ?? "—"}, refined ${t.refined_answer ?? "—"}`,
      agree ? ` · verdict ${agree}` : ""),
    t.status === "failed"
      ? h("p", { class: "error", id: "t-error" }, `Failed (${t.error_kind ?? "unknown"}): ${t.error ?? ""}`)
      : null);
  renderMath(root);
  root.scrollIntoView({ block: "start" });
}
