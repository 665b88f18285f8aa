"""Dataset card of a snapshot: JSON (machine-readable) and the same content as Markdown.

Built from what a stored snapshot keeps (name, spec, stats, content hash, lineage per job), so the
API can render it long after curation ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from cgd.curation.export import LAYOUTS
from cgd.curation.filters import CurationSpec, Dedup, Filters
from cgd.curation.formats import ANSWER_MODES, INPUT_TEMPLATES, MODES, TARGET_FIELDS, Mode
from cgd.curation.targets import NOTES

# Model settings shown on a card. An allow-list, not a deny-list: endpoint settings may hold
# credentials (an api_key, a base_url with user:password, headers) and a card gets shared.
_MODEL_KEYS = (
    "model",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
)
_LINEAGE_KEYS = ("template", "template_version", "verifier", "teacher_solution")


def _model_summary(settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if settings is None:
        return None  # the dataset's own responses were the initial answers
    return {k: settings[k] for k in _MODEL_KEYS if k in settings}


def lineage_summary(lineage: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per job: models (safe settings only), template and verifier."""
    out = []
    for job_id, lin in sorted(lineage.items(), key=lambda kv: str(kv[0])):
        lin = lin or {}
        entry: dict[str, Any] = {"job_id": job_id}
        entry["student"] = _model_summary(lin.get("student"))
        entry["teacher"] = _model_summary(lin.get("teacher"))
        entry.update({k: lin.get(k) for k in _LINEAGE_KEYS})
        out.append(entry)
    return out


def build_card(
    *,
    name: str | None,
    spec: CurationSpec | Mapping[str, Any],
    stats: Mapping[str, Any],
    content_hash: str,
    lineage: Mapping[str, Any],
) -> dict[str, Any]:
    """The card as JSON-able data."""
    spec = spec if isinstance(spec, CurationSpec) else CurationSpec.model_validate(spec)
    return {
        "name": name if name is not None else spec.name,
        "content_hash": content_hash,
        "job_ids": sorted(str(j) for j in lineage),
        "counts": {k: stats.get(k) for k in ("output", "train", "val", "items")},
        "stats": dict(stats),
        "quality": stats.get("quality"),
        "curation": spec.options(),
        "filters": curation_steps(spec),
        "lineage": lineage_summary(lineage),
        "modes": {
            m: {"input_template": INPUT_TEMPLATES[m], "target_field": _target_field(m)}
            for m in MODES
        },
        "targets": stats.get("targets"),
        "warnings": target_warnings(stats, lineage),
        "layouts": list(LAYOUTS),
        # The dataset's own columns (name -> kind), in every export (cgd.curation.extra_columns).
        "extra_columns": dict(stats.get("extra_columns") or {}),
    }


def _target_field(mode: Mode) -> str:
    return "solution, else reference" if mode == Mode.sft else TARGET_FIELDS[mode]


def target_warnings(stats: Mapping[str, Any], lineage: Mapping[str, Any]) -> list[str]:
    """What would mislead a comparison of modes trained on this snapshot."""
    out = []
    targets = stats.get("targets") or {}
    bare = (targets.get("sft_source") or {}).get("bare_answer", 0)
    if bare:
        rows = (targets.get("sft") or {}).get("rows", 0)
        out.append(
            f"{bare} of {rows} sft targets are bare answers with no worked solution: sft would "
            "train the student to answer without reasoning. Upload the data with its solution "
            "column (solution_field) for a fair SFT baseline."
        )
    without = sorted(
        str(j) for j, lin in lineage.items() if not (lin or {}).get("teacher_solution")
    )
    if without:
        out.append(
            "mode distill is unavailable: job(s) "
            + ", ".join(without)
            + ' ran without "teacher_solution": true (no teacher direct answers).'
        )
    for mode in ANSWER_MODES:
        counts = targets.get(mode) or {}
        if free := counts.get("free_form", 0):
            out.append(
                f"{free} {mode} targets are free-form answers (prose, or no stated math final "
                "answer): kept as written, with no \\boxed{} invented."
            )
        if unboxed := counts.get("unboxed", 0):  # snapshots made before `free_form`
            out.append(f"{unboxed} {mode} targets have no final answer to put in \\boxed{{}}.")
    return out


def _setting(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def curation_steps(spec: CurationSpec) -> list[dict[str, Any]]:
    """Every curation step in the order it runs (``cgd.curation.filters``), whether it was
    applied and with which setting, and whether that setting is the default: a card reader must
    not have to know the defaults of the version that built the snapshot."""
    f, dd, dc = spec.filters, spec.dedup, spec.decontaminate
    filter_steps = (
        ("truncated", "no_truncation", bool(f.no_truncation)),
        ("refined_correct", "refined_correct", f.refined_correct is not None),
        ("initial_correct", "initial_correct", f.initial_correct is not None),
        ("verdict_agrees", "verdict_agrees", f.verdict_agrees is not None),
        ("no_boxed", "require_boxed", bool(f.require_boxed)),
        ("meta_commentary", "no_meta_commentary", bool(f.no_meta_commentary)),
        ("too_short", "min_chars", f.min_chars is not None),
        ("too_long", "max_chars", f.max_chars is not None),
    )
    out: list[dict[str, Any]] = [
        {"step": s, "option": None, "setting": "always", "applied": True, "default": True}
        for s in ("repeated_triplet", "incomplete")
    ]
    for step, key, applied in filter_steps:
        value = getattr(f, key)
        default = Filters.model_fields[key].default
        out.append(
            {
                "step": step,
                "option": f"filters.{key}",
                "setting": value,
                "applied": applied,
                "default": value == default,
            }
        )
    decontam = dc.model_dump(mode="json")
    out.append(
        {
            "step": "contaminated",
            "option": "decontaminate",
            "setting": decontam,
            "applied": bool(dc.sets or dc.dataset_ids),
            "default": decontam == type(dc)().model_dump(mode="json"),
        }
    )
    for step, key, applied in (
        ("exact_duplicate", "exact", bool(dd.exact)),
        ("near_duplicate", "near_threshold", dd.near_threshold is not None),
    ):
        value = getattr(dd, key)
        out.append(
            {
                "step": step,
                "option": f"dedup.{key}",
                "setting": value,
                "applied": applied,
                "default": value == Dedup.model_fields[key].default,
            }
        )
    ratio = f.verdict_ratio
    for step in ("no_verdict", "verdict_ratio"):
        out.append(
            {
                "step": step,
                "option": "filters.verdict_ratio",
                "setting": _setting(ratio),
                "applied": ratio is not None,
                "default": ratio is None,
            }
        )
    return out


def _steps_markdown(steps: list[Mapping[str, Any]] | None) -> list[str]:
    if not steps:
        return []
    lines = [
        "Every step, applied or not, with its setting (`default` = left at the default):",
        "",
        "| step | option | setting | applied |",
        "|---|---|---|---|",
    ]
    for st in steps:
        setting = orjson.dumps(st["setting"]).decode()
        if st["default"]:
            setting += " (default)"
        option = f"`{st['option']}`" if st["option"] else "-"
        applied = "yes" if st["applied"] else "no"
        lines.append(f"| {st['step']} | {option} | {setting} | {applied} |")
    return [*lines, ""]


QUALITY_ROWS = (
    ("initial accuracy", "initial_accuracy", "initial_right", "initial_judged"),
    ("refined accuracy", "refined_accuracy", "refined_right", "refined_judged"),
    ("fix rate (wrong -> right)", "fix_rate", "fixed", "initially_wrong_judged"),
    ("break rate (right -> wrong)", "break_rate", "broken", "initially_right_judged"),
    ("verdict-verifier agreement", "verdict_agreement", "verdict_agrees", "verdict_judged"),
    (
        "precision of 'wrong' verdicts",
        "wrong_verdict_precision",
        "wrong_verdicts_true",
        "wrong_verdicts",
    ),
    (
        "recall of 'wrong' verdicts",
        "wrong_verdict_recall",
        "wrong_verdicts_true",
        "initially_wrong",
    ),
    ("truncation rate", "truncation_rate", "truncated", "finished"),
)


def quality_markdown(quality: Mapping[str, Any] | None) -> list[str]:
    """The quality numbers as a Markdown table (rate and the counts behind it)."""
    if not quality:
        return []
    counts = quality.get("counts") or {}
    lines = [
        "## Quality",
        "",
        "Over the selected triplets; a rate counts only answers the verifier could judge.",
        "",
        "| measure | rate | count |",
        "|---|---|---|",
    ]
    for label, key, num, den in QUALITY_ROWS:
        rate = quality.get(key)
        shown = "-" if rate is None else f"{100 * rate:.1f}%"
        lines.append(f"| {label} | {shown} | {counts.get(num, 0)}/{counts.get(den, 0)} |")
    return [*lines, ""]


def _json_block(obj: Any) -> str:
    return "```json\n" + orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n```"


def _targets_markdown(targets: Mapping[str, Any] | None) -> list[str]:
    if not targets:
        return []
    lines = [
        "## Targets",
        "",
        "Every answer target ends in a `\\boxed{}` final answer; where the source had none it was"
        " added (`cgd.curation.targets`: `hashes` = GSM8K's `#### X`, `bare` = a bare answer,"
        " `appended` = `The final answer is \\boxed{X}.`); `free_form` targets (prose, or no"
        " stated math final answer) are kept as written: no box is invented.",
        "",
    ]
    # `unboxed`: the count of snapshots made before `free_form` existed.
    notes = NOTES + tuple(
        n for n in ("unboxed",) if any(n in (targets.get(m) or {}) for m in ANSWER_MODES)
    )
    lines += [
        "| mode | rows | " + " | ".join(notes) + " |",
        "|---|---|" + "---|" * len(notes),
    ]
    for mode in ANSWER_MODES:
        counts = targets.get(mode) or {}
        cells = " | ".join(str(counts.get(n, 0)) for n in notes)
        lines.append(f"| `{mode}` | {counts.get('rows', 0)} | {cells} |")
    source = targets.get("sft_source") or {}
    lines += [
        "",
        "sft targets: "
        + (", ".join(f"{k} {v}" for k, v in source.items()) or "none")
        + " (`bare_answer`: no reasoning).",
        "",
    ]
    return lines


def _extra_columns_markdown(extra: Mapping[str, str] | None) -> list[str]:
    if not extra:
        return []
    return [
        "## The dataset's own columns",
        "",
        "Kept on every row, to join exported triplets back to the source data: their own"
        " columns in the flat layouts (`native`, `alpaca`, the Hub's; `extra_` prefixed where"
        " the layout has a column of that name), under `metadata` in the chat layouts.",
        "",
        "| column | type |",
        "|---|---|",
        *(f"| `{name.replace('|', '&#124;')}` | {kind} |" for name, kind in extra.items()),
        "",
    ]


def render_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown (for people; the JSON is the reference)."""
    stats = card["stats"]
    counts = card["counts"]
    lines = [
        f"# {card.get('name') or 'CGD snapshot'}",
        "",
        "Critique-guided distillation triplets (prompt, student's initial answer, teacher critique,"
        " teacher's refined answer), curated into an immutable snapshot.",
        "",
        f"- content hash: `{card['content_hash']}`",
        f"- triplets: {counts['output']} (train {counts['train']}, validation {counts['val']}),"
        f" prompts: {counts['items']}",
        f"- from jobs: {', '.join(f'`{j}`' for j in card['job_ids']) or '-'}",
        "",
        *(f"> **Warning:** {w}" + "\n" for w in card.get("warnings") or ()),
        "## Curation",
        "",
        f"Input triplets: {stats.get('input')}. Dropped, by reason (steps in this order:"
        " see `cgd.curation.filters`):",
        "",
        "| reason | triplets |",
        "|---|---|",
        *(f"| {reason} | {n} |" for reason, n in stats.get("dropped", {}).items()),
        "",
        *_steps_markdown(card.get("filters")),
    ]
    if contaminated := stats.get("contaminated"):
        shown = ", ".join(f"`{c['item_id']}` ({'/'.join(c['sets'])})" for c in contaminated[:20])
        more = f" and {len(contaminated) - 20} more" if len(contaminated) > 20 else ""
        lines += [f"Contaminated prompts removed: {len(contaminated)}: {shown}{more}.", ""]
    lines += ["Options:", "", _json_block(card["curation"]), ""]
    lines += quality_markdown(card.get("quality"))
    lines += ["## Lineage", ""]
    lines += ["| job | student | teacher | template | verifier |", "|---|---|---|---|---|"]
    for e in card["lineage"]:
        student = (e["student"] or {}).get("model", "dataset responses")
        teacher = (e["teacher"] or {}).get("model", "-")
        template = f"{e.get('template')} ({e.get('template_version')})"
        lines.append(f"| `{e['job_id']}` | {student} | {teacher} | {template} | {e['verifier']} |")
    lines += ["", "Sampling settings:", "", _json_block(card["lineage"]), ""]
    lines += _targets_markdown(card.get("targets"))
    lines += _extra_columns_markdown(card.get("extra_columns"))
    lines += ["## Training formats", ""]
    lines += [
        "Export layouts: " + ", ".join(f"`{x}`" for x in card["layouts"]) + ". The user turn of"
        " each mode is exactly this text (`{field}` = the triplet's field); the assistant turn"
        " is the target field.",
        "",
    ]
    for mode, m in card["modes"].items():
        lines += [f"### `{mode}` -> `{m['target_field']}`", "", "```text", m["input_template"]]
        lines += ["```", ""]
    return "\n".join(lines)
