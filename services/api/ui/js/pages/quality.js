import { h, pct, table } from "../dom.js";

const ROWS = [
  ["initial accuracy", "initial_accuracy", "initial_right", "initial_judged"],
  ["refined accuracy", "refined_accuracy", "refined_right", "refined_judged"],
  ["fix rate (wrong → right)", "fix_rate", "fixed", "initially_wrong_judged"],
  ["break rate (right → wrong)", "break_rate", "broken", "initially_right_judged"],
  ["verdict–verifier agreement", "verdict_agreement", "verdict_agrees", "verdict_judged"],
  ["precision of “wrong” verdicts", "wrong_verdict_precision", "wrong_verdicts_true", "wrong_verdicts"],
  ["recall of “wrong” verdicts", "wrong_verdict_recall", "wrong_verdicts_true", "initially_wrong"],
  ["truncation rate", "truncation_rate", "truncated", "finished"],
];

export function qualityTable(q) {
  if (!q) return h("p", { class: "muted" }, "No quality numbers yet.");
  const c = q.counts || {};
  const t = table(
    [["measure", (r) => r[0]], ["rate", (r) => pct(q[r[1]])], ["count", (r) => `${c[r[2]] ?? 0} / ${c[r[3]] ?? 0}`]],
    ROWS,
  );
  t.id = "quality";
  const parts = [t];
  if (q.tokens_by_stage) {
    parts.push(h("h2", {}, "Tokens per stage"));
    parts.push(table(
      [["stage", (r) => r[0]], ["prompt", (r) => r[1].prompt.toLocaleString()],
        ["completion", (r) => r[1].completion.toLocaleString()]],
      Object.entries(q.tokens_by_stage),
    ));
  }
  return parts;
}
