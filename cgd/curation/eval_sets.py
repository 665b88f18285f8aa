"""The bundled evaluation sets (``cgd/data/*.jsonl``) in one normalised shape.

Used by decontamination (their problems must never end up in a training snapshot) and by
evaluation. Sources and licenses: ``cgd/data/LICENSES.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import orjson

from cgd.enums import Verifier

EVAL_SETS: tuple[str, ...] = ("math500", "amc23", "aime24")


def _answer_text(answer: object) -> str:
    # AMC23 stores answers as floats (27.0); every other set (and the verifier) reads strings.
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    return str(answer)


@lru_cache(maxsize=len(EVAL_SETS))
def _load(name: str) -> tuple[tuple[str, str, str], ...]:
    raw = resources.files("cgd").joinpath("data", f"{name}.jsonl").read_bytes()
    rows = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        r = orjson.loads(line)
        # MATH-500 ids are `unique_id` ("test/precalculus/807.json"); AMC/AIME have an int `id`.
        row_id = r["unique_id"] if "unique_id" in r else f"{name}-{r['id']}"
        problem = r.get("problem") or r["question"]
        rows.append((str(row_id), problem, _answer_text(r["answer"])))
    return tuple(rows)


def load_eval_set(name: str) -> list[dict[str, str]]:
    """Rows ``{"id", "problem", "answer"}`` of a bundled set: ``math500``, ``amc23``, ``aime24``.

    Returns fresh dicts on each call, so callers may mutate them.
    """
    if name not in EVAL_SETS:
        raise KeyError(f"unknown eval set {name!r}; known: {list(EVAL_SETS)}")
    return [{"id": i, "problem": p, "answer": a} for i, p, a in _load(name)]


# -- eval-set specs: a source with a field mapping and a verifier kind ---------------------------

# Bundled sets this harness knows beyond cgd.curation.eval_sets (file in cgd/data, if shipped).
# The GSM8K *test* split is not bundled (no source for it was available offline); drop the
# unchanged openai/grade-school-math test.jsonl in as cgd/data/gsm8k_test.jsonl to enable it.
EXTRA_SETS: dict[str, str] = {"gsm8k": "gsm8k_test.jsonl"}
QUESTION_FIELDS = ("problem", "question", "prompt", "input", "query")
ANSWER_FIELDS = ("answer", "reference", "target", "label", "solution")
CHOICE_FIELDS = ("choices", "options")
# Fields whose text is a worked solution: the reference is its final (boxed, or "####") answer.
SOLUTION_FIELDS = ("solution",)
# SOURCE:key=value:key=value (colons, not commas: `cgd eval --sets` splits sets at commas).
_OPTION_RE = re.compile(r"^(?P<src>.+?)(?P<opts>(?::[A-Za-z_]+=[^:,]*)+)$")


@dataclass(frozen=True)
class Sampling:
    """``k`` samples per problem (the eval set's ``n``) at this temperature / top-p (and greedy
    as well); the generators draw ``k`` completions per prompt."""

    k: int
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class EvalSet:
    """What to evaluate on and how to grade it.

    Written as ``SOURCE[:key=value...]`` (see :func:`parse_eval_set`): ``aime24:k=16``,
    ``data/mc.jsonl:question=prompt:answer=label:kind=choice``.
    """

    source: str  # a bundled set name or a JSONL path
    name: str  # the name results are reported under
    question_field: str | None = None  # None: the first of QUESTION_FIELDS present
    answer_field: str | None = None  # None: the first of ANSWER_FIELDS present
    kind: str = "math"  # verifier kind: math | choice | exact
    k: int = 1  # > 1: also avg@k and unbiased pass@k
    temperature: float = 0.6
    top_p: float = 0.95
    n: int | None = None  # samples per problem (>= k; None: k); more samples, less variance

    @property
    def samples(self) -> int:
        return self.n if self.n is not None else self.k

    @property
    def sampling(self) -> Sampling | None:
        if self.k <= 1 and self.samples <= 1:
            return None
        return Sampling(self.samples, self.temperature, self.top_p)


# An eval set's results are written to files named after it (``<name>.jsonl``): a name from a
# request is one plain file name, never a path.
SET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _default_name(source: str) -> str:
    return source if source in EVAL_SETS or source in EXTRA_SETS else Path(source).stem


def parse_eval_set(spec: str | EvalSet) -> EvalSet:
    """``SOURCE[:key=value...]`` -> EvalSet. Keys: ``question``, ``answer`` (field names),
    ``kind`` (math|choice|exact), ``k`` (avg@k / pass@k), ``n`` (samples per problem,
    default k, at least k: unbiased pass@k from n samples), ``temperature``, ``top_p``, ``name``.
    SOURCE is math500, amc23, aime24, gsm8k (if bundled) or a JSONL path (e.g. an
    uploaded dataset downloaded by the trainer: rows ``{id, problem, answer}``)."""
    if isinstance(spec, EvalSet):
        return spec
    source, options = spec, {}
    m = _OPTION_RE.match(spec)
    if m is not None:
        source = m.group("src")
        parts = m.group("opts")[1:].split(":")
        options = dict(part.split("=", 1) for part in parts)
    known = {"question", "answer", "kind", "k", "n", "temperature", "top_p", "name"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"eval set {spec!r}: unknown option(s) {sorted(unknown)}; use {known}")
    kind = options.get("kind", "math")
    if kind not in tuple(Verifier) or kind == Verifier.none:
        raise ValueError(f"eval set {spec!r}: kind must be math, choice or exact, not {kind!r}")
    try:
        k = int(options.get("k", "1"))
        temperature = float(options.get("temperature", "0.6"))
        top_p = float(options.get("top_p", "0.95"))
        n = int(options["n"]) if "n" in options else None
    except ValueError as exc:
        raise ValueError(f"eval set {spec!r}: {exc}") from None
    if k < 1:
        raise ValueError(f"eval set {spec!r}: k must be >= 1")
    if n is not None and n < k:
        raise ValueError(f"eval set {spec!r}: n (samples per problem) must be >= k ({k}), not {n}")
    if "name" in options and not SET_NAME_RE.fullmatch(options["name"]):
        raise ValueError(
            f"eval set {spec!r}: name must match {SET_NAME_RE.pattern} (letters, digits, '.', "
            "'_', '-'; at most 64)"
        )
    return EvalSet(
        source=source,
        name=options.get("name") or _default_name(source),
        question_field=options.get("question"),
        answer_field=options.get("answer"),
        kind=kind,
        k=k,
        temperature=temperature,
        top_p=top_p,
        n=n,
    )


def set_name(spec: str | EvalSet) -> str:
    """The name an eval set's results are reported under."""
    return parse_eval_set(spec).name
