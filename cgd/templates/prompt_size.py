"""A job whose rows cannot fit the prompt cap is refused at creation, naming a row.

Bounded cost: every render is capped (it stops at ``CGD_MAX_PROMPT_CHARS``), and the dataset is
not read row by row. A stand-in question as long as the dataset's longest prompt (from its upload
statistics) is rendered first; only when that does not fit (or the initial answers come from the
dataset, whose lengths the statistics do not hold) are the longest rows read and rendered, and
the first that does not fit is named. A row that passes here can still fail in the worker, when
the student's answer or the critique makes a later request too long: that item fails with the
same reason and nothing over the cap is sent.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cgd.db.models import Dataset, DatasetItem
from cgd.errors import InvalidRequest
from cgd.templates.core import MAX_PROMPT_SETTING, PromptTooLong, Template

# Rows rendered when the stand-in does not fit: the longest ones, where a refusal must come from.
LONGEST_ROWS = 8


def check_rows_fit(
    session: Session,
    dataset: Dataset,
    template: Template,
    *,
    dataset_answers: bool,
    teacher_solution: bool,
    max_chars: int,
) -> None:
    """422 naming ``CGD_MAX_PROMPT_CHARS`` and a row when a request of the job would pass it."""
    capped = template.with_cap(max_chars)
    longest = (dataset.stats.get("prompt_chars") or {}).get("max")
    if not dataset_answers and isinstance(longest, int):
        try:
            _render_all(capped, "x" * min(longest, max_chars + 1), None, teacher_solution)
            return
        except PromptTooLong:
            pass  # find the real row that does not fit
    for row in _longest_rows(session, dataset.id, with_response=dataset_answers):
        try:
            _render_all(
                capped, row.prompt, row.response if dataset_answers else None, teacher_solution
            )
        except PromptTooLong as exc:
            raise InvalidRequest(
                {
                    "field": "dataset_id" if exc.stage == "probe" else "template",
                    "reason": f"{exc} for dataset row {row.line} (item {row.item_id!r}); "
                    "shorten the template or the rows, or ask the operator to raise "
                    f"{MAX_PROMPT_SETTING}",
                    "setting": MAX_PROMPT_SETTING,
                    "max_chars": max_chars,
                    "line": row.line,
                    "item_id": row.item_id,
                }
            ) from None


def _render_all(
    template: Template, question: str, response: str | None, teacher_solution: bool
) -> None:
    """Every request of one item that can be rendered before any answer exists (answers and
    the critique as empty texts: the least they can add)."""
    answer = response if response is not None else ""
    if response is None:
        template.probe(question)
    template.refine(question, answer, "")  # includes the critique request
    if teacher_solution:
        template.solve(question)


def _longest_rows(session: Session, dataset_id: uuid.UUID, with_response: bool) -> list[Any]:
    size: Any = func.length(DatasetItem.prompt)
    if with_response:
        size = size + func.coalesce(func.length(DatasetItem.response), 0)
    return list(
        session.execute(
            select(DatasetItem.line, DatasetItem.item_id, DatasetItem.prompt, DatasetItem.response)
            .where(DatasetItem.dataset_id == dataset_id)
            .order_by(size.desc(), DatasetItem.idx)
            .limit(LONGEST_ROWS)
        )
    )
