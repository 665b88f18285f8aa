"""The comparison report of an experiment: one row per (mode, eval set), built from what each
training run reported (its ``data`` event, its final ``eval`` event with per-problem verdicts,
its metrics and timestamps).

Accuracy comes with a paired bootstrap interval over problems (seeds averaged per problem
first), and every mode's difference from the baseline (cgd) gets its own interval; a
difference whose interval contains 0 is reported as "no significant difference", never as a
ranking. avg@k and pass@k (unbiased, from n ≥ k samples) are reported where the set sampled.
The report also checks what makes the comparison fair: every run trained on the same rows
(same ``rows_sha256``) for the same number of steps.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cgd.experiments.stats import Interval, paired_bootstrap
from cgd.train.passk import avg_at_k, mean_pass_at_k

NO_DIFFERENCE = "no significant difference"


@dataclass
class RunResult:
    """What one finished training run of an experiment reported."""

    run_id: str
    mode: str
    seed: int
    status: str
    data: dict[str, Any] = field(default_factory=dict)  # the run's ``data`` event
    eval: dict[str, Any] = field(default_factory=dict)  # its final ``eval`` event
    tokens_trained: int | None = None
    wall_s: float | None = None
    uncertainty: dict[str, Any] | None = None


def _per_problem(runs: Sequence[RunResult], name: str) -> tuple[list[str], list[float]]:
    """(problem ids, greedy score per problem averaged over the runs' seeds), over the problems
    every run answered."""
    tables = []
    for run in runs:
        p = run.eval.get("problems", {}).get(name)
        try:
            tables.append(dict(zip(p["ids"], map(bool, p["correct"]), strict=True)))
        except (TypeError, KeyError, ValueError):  # missing or malformed: the set is left out
            return [], []
    ids = [i for i in tables[0] if all(i in t for t in tables)]
    return ids, [sum(float(t[i]) for t in tables) / len(tables) for i in ids]


def _sampled(runs: Sequence[RunResult], name: str, k: int) -> tuple[float, float] | None:
    """(avg@k, pass@k) averaged over seeds, when every run sampled the set."""
    values = []
    for run in runs:
        p = run.eval.get("problems", {}).get(name) or {}
        samples = p.get("samples")
        if not isinstance(samples, list) or not samples:
            return None
        try:
            values.append((avg_at_k(samples), mean_pass_at_k(samples, k)))
        except (TypeError, ValueError):  # none, or fewer samples than k: no pass@k to report
            return None
    return (
        sum(v[0] for v in values) / len(values),
        sum(v[1] for v in values) / len(values),
    )


def _fairness(runs: Sequence[RunResult]) -> dict[str, Any]:
    hashes = {r.data.get("rows_sha256") for r in runs}
    steps = {r.data.get("total_steps") for r in runs}
    return {
        "same_rows": len(hashes) == 1 and None not in hashes,
        "same_steps": len(steps) == 1 and None not in steps,
        "rows": sorted({r.data.get("rows") for r in runs if r.data.get("rows") is not None}),
        "total_steps": sorted(s for s in steps if s is not None),
        "dropped": runs[0].data.get("dropped", {}) if runs else {},
        "truncated": {r.mode: r.data.get("truncated", {}).get(r.mode, 0) for r in runs},
    }


def build_report(
    runs: Sequence[RunResult],
    *,
    baseline: str = "cgd",
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The report as JSON-able data: ``sets`` (per set: rows per mode), ``modes`` (per mode:
    tokens, wall time, uncertainty gap) and ``fairness`` (same rows, same steps)."""
    finished = [r for r in runs if r.status == "completed"]
    by_mode: dict[str, list[RunResult]] = {}
    for r in sorted(finished, key=lambda r: (r.mode != baseline, r.mode, r.seed)):
        by_mode.setdefault(r.mode, []).append(r)
    base = baseline if baseline in by_mode else None
    set_names = sorted({name for r in finished for name in r.eval.get("problems", {})})
    sets: dict[str, Any] = {}
    for name in set_names:
        per_mode = {m: _per_problem(rs, name) for m, rs in by_mode.items()}
        common = set.intersection(*(set(ids) for ids, _ in per_mode.values()))
        scores = {
            m: [s for i, s in zip(ids, vals, strict=True) if i in common]
            for m, (ids, vals) in per_mode.items()
        }
        if not common:
            continue
        intervals, diffs = paired_bootstrap(scores, base, resamples=resamples, seed=seed)
        rows = []
        for m, rs in by_mode.items():
            k = int((rs[0].eval.get("problems", {}).get(name) or {}).get("k") or 1)
            sampled = _sampled(rs, name, k) if k > 1 else None
            diff = diffs.get(m)
            rows.append(
                {
                    "mode": m,
                    "seeds": [r.seed for r in rs],
                    "n": len(common),
                    "accuracy": intervals[m].as_dict(),
                    "no_answer": sum(
                        sum(bool(x) for x in (r.eval["problems"][name].get("no_answer") or []))
                        for r in rs
                    )
                    / len(rs),
                    "k": k,
                    "avg_at_k": sampled[0] if sampled else None,
                    "pass_at_k": sampled[1] if sampled else None,
                    "diff_vs_baseline": diff.as_dict() if diff else None,
                    "verdict": _verdict(diff, m, base),
                }
            )
        sets[name] = rows
    modes = {
        m: {
            "runs": [r.run_id for r in rs],
            "tokens_trained": _mean_or_none([r.tokens_trained for r in rs]),
            "wall_s": _mean_or_none([r.wall_s for r in rs]),
            "nll_gap": _mean_or_none([(r.uncertainty or {}).get("nll_gap") for r in rs]),
            "entropy_gap": _mean_or_none([(r.uncertainty or {}).get("entropy_gap") for r in rs]),
        }
        for m, rs in by_mode.items()
    }
    return {
        "baseline": base,
        "confidence": 0.95,
        "resamples": resamples,
        "sets": sets,
        "modes": modes,
        "fairness": _fairness(finished),
        "runs_not_completed": [
            {"run_id": r.run_id, "mode": r.mode, "seed": r.seed, "status": r.status}
            for r in runs
            if r.status != "completed"
        ],
    }


def _verdict(diff: Interval | None, mode: str, baseline: str | None) -> str:
    if baseline is None:
        return "no baseline"
    if mode == baseline:
        return "baseline"
    assert diff is not None
    if not diff.significant:
        return NO_DIFFERENCE
    return f"better than {baseline}" if diff.estimate > 0 else f"worse than {baseline}"


def _mean_or_none(values: Sequence[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _pct(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _ci(d: dict[str, float] | None, signed: bool = False) -> str:
    if d is None:
        return "–"
    sign = "+" if signed and d["estimate"] > 0 else ""
    return f"{sign}{_pct(d['estimate'])} [{_pct(d['low'])}, {_pct(d['high'])}]"


def to_markdown(report: dict[str, Any]) -> str:
    """One table per eval set (accuracy in %, 95% intervals), then per-mode training figures."""
    base = report["baseline"] or "baseline"
    lines = []
    for name, rows in report["sets"].items():
        lines += [
            f"### {name} (n = {rows[0]['n']} problems)",
            "",
            f"| mode | accuracy % [95% CI] | Δ vs {base} [95% CI] | verdict | avg@k | pass@k "
            "| no answer |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            k = r["k"]
            lines.append(
                f"| {r['mode']} | {_ci(r['accuracy'])} | {_ci(r['diff_vs_baseline'], True)} "
                f"| {r['verdict']} | {_pct(r['avg_at_k'])}{f' (k={k})' if k > 1 else ''} "
                f"| {_pct(r['pass_at_k'])} | {r['no_answer']:g} |"
            )
        lines.append("")
    lines += [
        "| mode | tokens trained | wall s | NLL gap | entropy gap |",
        "|---|---|---|---|---|",
    ]
    for m, v in report["modes"].items():
        lines.append(
            f"| {m} | {_num(v['tokens_trained'], '.0f')} | {_num(v['wall_s'], '.1f')} "
            f"| {_num(v['nll_gap'], '.4f')} | {_num(v['entropy_gap'], '.4f')} |"
        )
    f = report["fairness"]
    lines += [
        "",
        f"Same training rows in every run: {'yes' if f['same_rows'] else 'NO'} "
        f"(rows {f['rows']}, dropped {f['dropped']}); same steps: "
        f"{'yes' if f['same_steps'] else 'NO'} ({f['total_steps']}).",
    ]
    if report["runs_not_completed"]:
        lines.append(f"Runs not completed (left out): {report['runs_not_completed']}")
    return "\n".join(lines) + "\n"


def _num(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def to_svg(report: dict[str, Any], width: int = 640) -> str:
    """Accuracy bars with 95% interval whiskers, one group per eval set, one bar per mode."""
    sets = report["sets"]
    modes = sorted({r["mode"] for rows in sets.values() for r in rows})
    bar, gap, top, height = 22, 28, 30, 200
    group = max(1, len(modes)) * bar + gap
    chart_w = max(width, 60 + group * max(1, len(sets)))
    palette = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{chart_w}" height="{height + 90}" '
        'font-family="sans-serif" font-size="11">',
        '<text x="10" y="16">Accuracy (%) with 95% paired-bootstrap intervals</text>',
        f'<line x1="40" y1="{top + height}" x2="{chart_w - 10}" y2="{top + height}" '
        'stroke="#333"/>',
    ]
    for tick in (0, 25, 50, 75, 100):
        y = top + height - tick * height / 100
        out.append(f'<text x="8" y="{y + 4:.1f}">{tick}</text>')
        out.append(f'<line x1="36" y1="{y:.1f}" x2="{chart_w - 10}" y2="{y:.1f}" stroke="#eee"/>')
    for g, (name, rows) in enumerate(sets.items()):
        x0 = 50 + g * group
        for r in rows:
            i = modes.index(r["mode"])
            acc = r["accuracy"]
            x = x0 + i * bar
            y = top + height - acc["estimate"] * height
            lo = top + height - acc["low"] * height
            hi = top + height - acc["high"] * height
            colour = palette[i % len(palette)]
            out += [
                f'<rect x="{x}" y="{y:.1f}" width="{bar - 4}" height="{top + height - y:.1f}" '
                f'fill="{colour}"><title>{html.escape(r["mode"])}: {_ci(acc)}</title></rect>',
                f'<line x1="{x + (bar - 4) / 2}" y1="{lo:.1f}" x2="{x + (bar - 4) / 2}" '
                f'y2="{hi:.1f}" stroke="#000"/>',
            ]
        out.append(
            f'<text x="{x0}" y="{top + height + 16}">{html.escape(name)} (n={rows[0]["n"]})</text>'
        )
    for i, m in enumerate(modes):
        x = 50 + i * 110
        out += [
            f'<rect x="{x}" y="{top + height + 32}" width="10" height="10" '
            f'fill="{palette[i % len(palette)]}"/>',
            f'<text x="{x + 14}" y="{top + height + 41}">{html.escape(m)}</text>',
        ]
    out.append("</svg>")
    return "\n".join(out) + "\n"
