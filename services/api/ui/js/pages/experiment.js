// An experiment: its runs side by side (mode, seed, status, progress) and, once runs finish, the
// comparison report: accuracy with 95% intervals per mode and eval set, the difference vs cgd
// ("no significant difference" when its interval contains 0), and the chart.

import { all, api } from "../api.js";
import { badge, card, h, link, mount, pct, table, when, duration } from "../dom.js";
import { barChart } from "../chart.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function ci(iv, signed = false) {
  if (!iv) return "–";
  const sign = signed && iv.estimate > 0 ? "+" : "";
  const p = (v) => (100 * v).toFixed(1);
  return `${sign}${p(iv.estimate)} [${p(iv.low)}, ${p(iv.high)}]`;
}

function verdict(text) {
  const cls = text.startsWith("better") ? "verdict-better" : text.startsWith("worse") ? "verdict-worse" : "muted";
  return h("span", { class: cls }, text);
}

export async function experimentsPage(view) {
  const rows = await all("/v1/experiments", {}, 200);
  if (!view.alive()) return;
  mount(view.root, h("h1", {}, "Experiments"), rows.length ? table([
    ["experiment", (e) => link(`#/experiments/${e.id}`, e.id.slice(0, 8))],
    ["status", (e) => badge(e.status)],
    ["runs", (e) => `${e.runs.filter((r) => r.status === "completed").length}/${e.runs.length} done`],
    ["modes", (e) => [...new Set(e.runs.map((r) => r.mode))].join(", ")],
    ["base model", (e) => (e.spec || {}).base_model], ["created", (e) => when(e.created_at)],
  ], rows) : h("p", { class: "muted" }, "No experiments yet."));
}

export async function experimentPage(view, id) {
  for (;;) {
    const [exp, report] = await Promise.all([
      api(`/v1/experiments/${id}`), api(`/v1/experiments/${id}/report`)]);
    if (!view.alive()) return;
    render(view.root, exp, report);
    if (TERMINAL.has(exp.status)) return;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    if (!view.alive()) return;
  }
}

function render(root, exp, report) {
  const sets = Object.entries(report.sets || {});
  const fair = report.fairness || {};
  mount(root,
    h("h1", {}, "Experiment ", h("span", { class: "mono" }, exp.id)),
    h("p", {}, badge(exp.status), " ", (exp.spec || {}).base_model, " on snapshot ",
      link(`#/snapshots/${exp.snapshot_id}`, exp.snapshot_id.slice(0, 8))),
    h("div", { class: "grid" },
      card("runs", exp.runs.length),
      card("same training rows", fair.same_rows ? "yes" : "no", { id: "same-rows" }),
      card("same steps", fair.same_steps ? "yes" : "no"),
      card("rows", (fair.rows || []).join(", ") || "–")),
    h("h2", {}, "Runs"),
    table([
      ["mode", (r) => r.mode], ["seed", (r) => r.seed],
      ["run", (r) => link(`#/runs/${r.id}`, r.id.slice(0, 8))],
      ["status", (r) => badge(r.status)], ["progress", (r) => pct(r.progress)],
      ["tokens trained", (r) => ((report.modes || {})[r.mode] || {}).tokens_trained ?? "–"],
      ["wall", (r) => duration(((report.modes || {})[r.mode] || {}).wall_s)],
    ], exp.runs),
    h("h2", {}, "Comparison (accuracy %, 95% paired-bootstrap intervals)"),
    sets.length ? h("div", { id: "report" }, sets.flatMap(([name, rows]) => [
      h("h3", {}, `${name} (n = ${rows[0].n} problems)`),
      table([
        ["mode", (r) => r.mode], ["accuracy [95% CI]", (r) => ci(r.accuracy)],
        [`Δ vs ${report.baseline || "baseline"} [95% CI]`, (r) => ci(r.diff_vs_baseline, true)],
        ["verdict", (r) => verdict(r.verdict)],
        ["avg@k", (r) => (r.k > 1 ? `${pct(r.avg_at_k)} (k=${r.k})` : "–")],
        ["pass@k", (r) => (r.k > 1 ? pct(r.pass_at_k) : "–")],
        ["no answer", (r) => r.no_answer],
      ], rows),
    ])) : h("p", { class: "muted" }, "No finished run yet: the table appears as runs complete."),
    sets.length ? h("div", { class: "charts", id: "experiment-chart" }, barChart(
      sets.map(([name, rows]) => ({ name, bars: rows.map((r) => ({ name: r.mode,
        value: r.accuracy.estimate, low: r.accuracy.low, high: r.accuracy.high })) })),
      { title: "accuracy by mode" })) : null);
}
