// A training run: status, latest metrics, loss and eval curves from its events, the events.

import { all, api } from "../api.js";
import { badge, card, h, mount, pct, table, when } from "../dom.js";
import { lineChart } from "../chart.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function curves(events) {
  const loss = [];
  const lr = [];
  const evals = {};
  for (const e of events) {
    const d = e.data || {};
    if (typeof d.step !== "number") continue;
    if (e.type === "step") {
      if (typeof d.loss === "number") loss.push([d.step, d.loss]);
      if (typeof d.lr === "number") lr.push([d.step, d.lr]);
    } else if (e.type === "eval") {
      for (const [name, acc] of Object.entries(d.accuracy || {})) {
        if (typeof acc === "number") (evals[name] ||= []).push([d.step, acc]);
      }
    }
  }
  const byStep = (a, b) => a[0] - b[0];
  return { loss: loss.sort(byStep), lr: lr.sort(byStep),
    eval: Object.entries(evals).map(([name, points]) => ({ name, points: points.sort(byStep) })) };
}

export async function runPage(view, id) {
  for (;;) {
    const [run, events] = await Promise.all([
      api(`/v1/training-runs/${id}`), all(`/v1/training-runs/${id}/events`, {}, 20000)]);
    if (!view.alive()) return;
    render(view.root, run, events);
    if (TERMINAL.has(run.status)) return;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    if (!view.alive()) return;
  }
}

function render(root, run, events) {
  const c = curves(events);
  const m = run.metrics || {};
  const evalRows = Object.entries(run.eval || {}).filter(([, v]) => v && typeof v.accuracy === "number");
  // Step events are the curves; heartbeats only tell the API the trainer is alive.
  const shown = events
    .filter((e) => e.type !== "step" && !(e.type === "log" && (e.data || {}).heartbeat))
    .slice(-200)
    .reverse();
  mount(root,
    h("h1", {}, "Run ", h("span", { class: "mono" }, run.id)),
    h("p", {}, badge(run.status), " ", pct(run.progress)),
    run.error ? h("p", { class: "error" }, run.error) : null,
    h("div", { class: "grid" }, card("step", m.step ?? "–"),
      card("loss", typeof m.loss === "number" ? m.loss.toFixed(4) : "–"),
      card("lr", typeof m.lr === "number" ? m.lr.toExponential(2) : "–"),
      card("tokens/s", typeof m.tokens_per_s === "number" ? Math.round(m.tokens_per_s) : "–"),
      card("started", when(run.started_at))),
    h("h2", {}, "Curves"),
    h("div", { class: "charts", id: "curves" },
      lineChart([{ name: "loss", points: c.loss }], { title: "loss" }),
      lineChart([{ name: "learning rate", points: c.lr }], { title: "learning rate" }),
      lineChart(c.eval, { title: "eval accuracy" })),
    h("h2", {}, "Eval"),
    evalRows.length ? table([["set", (r) => r[0]], ["accuracy", (r) => pct(r[1].accuracy)],
      ["n", (r) => r[1].n ?? "–"], ["step", (r) => r[1].step ?? "–"]], evalRows)
      : h("p", { class: "muted" }, "No eval yet."),
    h("h2", {}, `Events (${shown.length}; steps are drawn above, heartbeats left out)`),
    table([["at", (e) => when(e.at)], ["type", (e) => e.type], ["data", (e) => fields(e.data)]],
      shown));
}

// An event's data as its fields (name: value), not a line of JSON: long values wrap, nested
// ones show as short JSON, and a field list folds past a few entries.
function fields(data) {
  const entries = Object.entries(data || {});
  if (!entries.length) return h("span", { class: "muted" }, "–");
  const item = ([k, v]) => h("li", {}, h("span", { class: "field" }, k), " ",
    typeof v === "object" && v !== null ? h("span", { class: "mono" }, JSON.stringify(v)) : String(v));
  const shown = entries.slice(0, 6);
  const list = h("ul", { class: "fields" }, shown.map(item));
  if (entries.length <= shown.length) return list;
  return h("div", {}, list, h("details", {}, h("summary", {}, `${entries.length - shown.length} more`),
    h("ul", { class: "fields" }, entries.slice(shown.length).map(item))));
}
