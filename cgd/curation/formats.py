"""Training input and target of each mode; shared by exports and the trainer.

Modes (docs/method.md, "Training format" and baselines):
- ``cgd``: instruction + question + student's initial answer + critique -> refined answer
- ``sft``: question -> the dataset's worked solution (else its reference answer)
- ``distill``: question -> the teacher's direct answer (jobs with ``teacher_solution``)
- ``cft``: question + initial answer -> critique (Critique Fine-Tuning)
- ``no-critique``: question + initial answer -> refined answer (CGD without the critique)

Every target but ``cft``'s (a critique, ending in its verdict line) ends in a ``\\boxed{}`` final
answer: see ``cgd.curation.targets``. At inference the student gets only the question, whatever
mode it was trained in.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from cgd.curation.targets import boxed_target
from cgd.enums import ExportMode
from cgd.templates import CGD_TRAIN_INSTRUCTION

Mode = ExportMode
MODES: tuple[Mode, ...] = tuple(ExportMode)

# Same wording as CGD minus the critique, so the ablation differs from CGD in that one thing.
NO_CRITIQUE_INSTRUCTION = (
    "Below are a question and a student's initial answer to it. Using the initial answer, write "
    "an improved, complete answer to the question."
)
# The Critique Fine-Tuning task statement (Wang et al., 2025).
CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."

# The exact user-turn text per mode; `{field}` is the triplet's field. Shown on dataset cards.
INPUT_TEMPLATES: dict[Mode, str] = {
    Mode.cgd: (
        CGD_TRAIN_INSTRUCTION + "\n\nQuestion: {prompt}\n\nStudent's Initial Answer: "
        "{initial_response}\n\nCritique: {critique}"
    ),
    Mode.sft: "{prompt}",
    Mode.distill: "{prompt}",
    Mode.cft: CFT_INSTRUCTION + "\n\nQuestion: {prompt}\n\nSolution: {initial_response}",
    Mode.no_critique: (
        NO_CRITIQUE_INSTRUCTION + "\n\nQuestion: {prompt}\n\nStudent's Initial Answer: "
        "{initial_response}"
    ),
}
TARGET_FIELDS: dict[Mode, str] = {
    Mode.cgd: "refined_response",
    Mode.sft: "solution",  # else "reference" (see target)
    Mode.distill: "teacher_solution",
    Mode.cft: "critique",
    Mode.no_critique: "refined_response",
}
# Modes whose target is an answer to the question (boxed); cft's target is a critique.
ANSWER_MODES: tuple[Mode, ...] = (Mode.cgd, Mode.sft, Mode.distill, Mode.no_critique)
_INPUT_FIELDS: dict[Mode, tuple[str, ...]] = {
    Mode.cgd: ("prompt", "initial_response", "critique"),
    Mode.sft: ("prompt",),
    Mode.distill: ("prompt",),
    Mode.cft: ("prompt", "initial_response"),
    Mode.no_critique: ("prompt", "initial_response"),
}


def check_mode(mode: str) -> Mode:
    if isinstance(mode, Mode):
        return mode  # the per-row callers pass a checked mode: skip Enum's lookup
    try:
        return Mode(mode)
    except ValueError:
        raise ValueError(f"unknown mode {mode!r}; known: {[m.value for m in MODES]}") from None


_NEEDED: dict[Mode, tuple[str, ...]] = {m: (*_INPUT_FIELDS[m], TARGET_FIELDS[m]) for m in MODES}


def missing_field(mode: Mode | str, triplet: Mapping[str, Any]) -> str | None:
    """The first field the mode needs that the triplet lacks (``None``: usable)."""
    m = check_mode(mode)
    for field in _NEEDED[m]:
        if not _present(triplet, field):
            if m == Mode.sft and field == "solution":
                if _present(triplet, "reference"):
                    continue  # sft falls back to the reference answer
                return "reference"
            return field
    return None


def fields_read(mode: Mode | str) -> tuple[str, ...]:
    """Every triplet field ``missing_field``, ``build_input`` and ``target`` read in ``mode``:
    an export fetches only these from the database."""
    m = check_mode(mode)
    return (*_NEEDED[m], "reference") if m == Mode.sft else _NEEDED[m]


def _present(triplet: Mapping[str, Any], field: str) -> bool:
    value = triplet.get(field)
    return value is not None and value != ""


def build_input(mode: Mode | str, triplet: Mapping[str, Any]) -> str:
    """The user-turn text the student is trained on (check ``missing_field`` first)."""
    parts = _INPUT_PARTS[check_mode(mode)]
    # The template's literal text and fields, joined: the same text as ``str.format_map`` (values
    # verbatim, braces inside them not re-parsed) in about half the time, per exported row.
    out: list[str] = []
    for literal, field in parts:
        out.append(literal)
        if field is not None:
            out.append(_text(triplet[field]))
    return "".join(out)


def _parts(template: str) -> tuple[tuple[str, str | None], ...]:
    """(literal text, the field after it) along ``template``; None after a trailing literal."""
    return tuple((lit, name) for lit, name, _, _ in string.Formatter().parse(template))


_INPUT_PARTS = {m: _parts(tpl) for m, tpl in INPUT_TEMPLATES.items()}


def target(mode: Mode | str, triplet: Mapping[str, Any]) -> str:
    """The assistant-turn text the loss is computed on."""
    return target_with_note(mode, triplet)[0]


def target_with_note(mode: Mode | str, triplet: Mapping[str, Any]) -> tuple[str, str]:
    """The target and how its boxed final answer came about (``cgd.curation.targets.NOTES``;
    ``critique`` for cft, whose target is not an answer)."""
    mode = check_mode(mode)
    if mode == Mode.cft:
        return _text(triplet["critique"]), "critique"
    if mode == Mode.sft:
        reference = triplet.get("reference")
        if _present(triplet, "solution"):
            ref = None if reference is None or reference == "" else _text(reference)
            return boxed_target(_text(triplet["solution"]), ref)
        return boxed_target(_text(reference))
    return boxed_target(_text(triplet[TARGET_FIELDS[mode]]))


def _text(value: Any) -> str:
    # References may arrive as numbers (AMC-style `27.0` columns); the chat formats need text.
    return value if isinstance(value, str) else str(value)
