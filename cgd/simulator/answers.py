"""Answers: references, stable hashing, normalisation, stage detection and text generation."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from cgd.simulator.config import SimConfig, Stage
from cgd.templates import extract_tagged

log = logging.getLogger("cgd.simulator")


def _stable_unit(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``; unlike hash() it is the same in every process."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _as_decimal(text: str) -> Decimal | None:
    cleaned = text.replace(",", "").replace("$", "").strip()
    try:
        value = Decimal(cleaned)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _format_decimal(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{…}`` in ``text`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


_SPACE_RE = re.compile(r"\s+|\\[!,;: ]")


def normalise_answer(answer: str) -> str:
    """Simple normalisation so that ``1,000``, ``$1000.`` and ``1000.0`` compare equal."""
    s = answer.strip().strip("$").rstrip(".").strip()
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "")
    s = _SPACE_RE.sub("", s)
    number = _as_decimal(s)
    return _format_decimal(number) if number is not None else s


def final_answer(value: Any) -> str | None:
    """The final answer in a reference: GSM8K ``#### n``, a boxed solution, or a bare value."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _format_decimal(Decimal(str(value)))
    text = str(value)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    boxed = last_boxed(text)
    return boxed.strip() if boxed is not None else text.strip()


_QUESTION_FIELDS = ("question", "prompt", "problem")
# `answer` first: MATH-500 has both, and its `answer` is the clean final answer.
_ANSWER_FIELDS = ("answer", "reference", "solution")


def load_references(paths: Iterable[Path]) -> dict[str, str]:
    """Map stripped question text to its reference final answer, from JSONL files."""
    refs: dict[str, str] = {}
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = orjson.loads(line)
                question = next((row[k] for k in _QUESTION_FIELDS if row.get(k)), None)
                answer = next((row[k] for k in _ANSWER_FIELDS if row.get(k) is not None), None)
                final = final_answer(answer)
                if isinstance(question, str) and final:
                    refs[question.strip()] = final
        log.info("simulator loaded references from %s (%d questions so far)", path, len(refs))
    return refs


def wrong_answer(final: str) -> str:
    """A value that is clearly not ``final``: number + 1 when numeric."""
    number = _as_decimal(final)
    if number is not None:
        return _format_decimal(number + 1)
    return f"{final}+1"


# --------------------------------------------------------------------------------------------
# Stage detection and text generation


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    stage: Stage
    question: str
    student_answer: str | None = None


def classify(messages: list[dict[str, Any]]) -> ParsedRequest:
    """Tell probe / critique / refine / solve apart by message structure (cgd.templates'
    contract: tagged question and student answer; ``solve`` is the teacher_solution call, a
    tagged question without a student answer)."""
    roles = [m.get("role") for m in messages]
    contents = [m.get("content") or "" for m in messages]
    if roles == ["user"]:
        return ParsedRequest("probe", contents[0].strip())
    if roles[:2] == ["system", "user"]:
        question = extract_tagged(contents[1], "question")
        answer = extract_tagged(contents[1], "student_answer")
        if question is not None and answer is not None:
            if len(roles) == 2:
                return ParsedRequest("critique", question.strip(), answer)
            if roles[2:] == ["assistant", "user"]:
                return ParsedRequest("refine", question.strip(), answer)
        if question is not None and len(roles) == 2:
            return ParsedRequest("solve", question.strip())
        if len(roles) == 2:
            # A system prompt plus the question (e.g. evaluation): answered like a probe.
            return ParsedRequest("probe", contents[1].strip())
    users = [c for r, c in zip(roles, contents, strict=True) if r == "user"]
    return ParsedRequest("other", users[-1].strip() if users else "")


_STEPS = (
    "We read the question carefully and list the quantities it gives.",
    "We write down the relationship between those quantities.",
    "We compute the intermediate values one at a time.",
    "We check the units and redo the arithmetic to be sure.",
    "We combine the intermediate results into the quantity asked for.",
    "A quick estimate confirms that the result has a sensible size.",
    "We make sure every condition in the question has been used.",
)
_REVIEW = (
    "The student identifies the relevant quantities correctly.",
    "The setup of the main relationship is stated clearly.",
    "Some intermediate steps are skipped and should be written out.",
    "The arithmetic in the middle steps needs to be checked line by line.",
    "The explanation would be easier to follow with units on each value.",
    "The final step should restate what the question asks for.",
)


def _pick(options: tuple[str, ...], count: int, *key: object) -> list[str]:
    start = int(_stable_unit("pick", *key) * len(options))
    return [options[(start + i) % len(options)] for i in range(count)]


def _solution(final: str, *key: object) -> str:
    steps = _pick(_STEPS, 3 + int(_stable_unit("len", *key) * 4), *key)
    lines = ["Let's solve this step by step."]
    lines += [f"Step {i}: {step}" for i, step in enumerate(steps, 1)]
    lines.append(f"Therefore, the final answer is \\boxed{{{final}}}.")
    return "\n".join(lines)


class Answerer:
    """Deterministic texts for each stage, given the known references."""

    def __init__(self, references: dict[str, str]) -> None:
        self.references = references

    def reference(self, question: str) -> str:
        known = self.references.get(question)
        # Unknown question: a made-up but stable reference, so probe and critique still agree.
        return known if known is not None else str(10 + int(_stable_unit("ref", question) * 990))

    def answer(self, parsed: ParsedRequest, model: str, seed: Any, cfg: SimConfig) -> str:
        if parsed.stage == "critique":
            return self._critique(parsed, model, cfg)
        reference = self.reference(parsed.question)
        if parsed.stage in ("refine", "solve"):
            return _solution(reference, parsed.stage, model, parsed.question)
        right = _stable_unit("probe", model, parsed.question, seed) < cfg.accuracy
        final = reference if right else wrong_answer(reference)
        return _solution(final, "probe", model, parsed.question, seed)

    def _critique(self, parsed: ParsedRequest, model: str, cfg: SimConfig) -> str:
        student = parsed.student_answer or ""
        boxed = last_boxed(student)
        reference = self.reference(parsed.question)
        right = boxed is not None and normalise_answer(boxed) == normalise_answer(reference)
        lines = ["Let me check the student's solution step by step."]
        lines += _pick(_REVIEW, 3, "critique", model, parsed.question, student)
        if boxed is None:
            lines.append("The student never states a final answer in \\boxed{}.")
        elif right:
            lines.append(f"The final answer, {boxed}, is correct.")
        else:
            lines.append(
                f"The final answer, {boxed}, is not correct; the computation must be redone."
            )
        if _stable_unit("no-verdict", model, parsed.question, student) >= cfg.no_verdict_rate:
            lines.append(f"Conclusion: {'right' if right else 'wrong'}")
        return "\n".join(lines)


def count_tokens(text: str) -> int:
    """Rough, deterministic token count (4 characters a token, at least 1)."""
    return max(1, len(text) // 4)


def cut_to_tokens(text: str, tokens: int) -> str:
    return text[: max(0, tokens) * 4]


def apply_stop(text: str, stop: Any) -> str:
    """Cut at the first stop string, as vLLM does (the stop string itself is not returned)."""
    if not stop:
        return text
    for s in [stop] if isinstance(stop, str) else stop:
        idx = text.find(s) if isinstance(s, str) and s else -1
        if idx >= 0:
            text = text[:idx]
    return text
