"""The bundled evaluation sets (``cgd/data/*.jsonl``) in one normalised shape.

Used by decontamination (their problems must never end up in a training snapshot) and by
evaluation. Sources and licenses: ``cgd/data/LICENSES.md``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import orjson

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
