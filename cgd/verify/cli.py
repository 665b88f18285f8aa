"""``cgd verify``: grade a JSONL file of responses against references from the command line.

    cgd verify score FILE.jsonl --response-field R --reference-field G [--kind math|choice|exact]

Prints one JSON object per row (``index``, ``line``, ``correct``, ``extracted``, ``reference``,
``reason``), then a summary object as the last line (``n``, ``correct``, ``incorrect``,
``undecided``, ``accuracy``). A field may be a dotted path into nested objects (``meta.answer``).

Exit codes: 0 scored (whatever the accuracy); 2 bad input (unreadable file, a line that is not
a JSON object, a missing field), named with its line number, before anything is scored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, help="Answer verification (grading) tools.")

EXIT_BAD_INPUT = 2
_SCORED_KINDS = ("math", "choice", "exact")


class BadInput(ValueError):
    """The input file cannot be scored; the message names the line and the field."""


def _field(row: dict[str, Any], path: str, line: int) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise BadInput(f"line {line}: missing field {path!r}")
        value = value[part]
    return value


def _response_text(value: Any, line: int, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise BadInput(f"line {line}: field {field!r} must be a string, got {type(value).__name__}")


def read_rows(
    path: Path, response_field: str, reference_field: str
) -> list[tuple[int, str | None, Any]]:
    """(line number, response, reference) of every non-blank line; BadInput on the first
    problem (the whole file is checked before anything is scored)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = []
    for line_number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadInput(f"line {line_number}: not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            message = f"line {line_number}: bad JSON ({exc.msg}, column {exc.colno})"
            raise BadInput(message) from None
        if not isinstance(row, dict):
            raise BadInput(f"line {line_number}: expected a JSON object")
        response = _response_text(
            _field(row, response_field, line_number), line_number, response_field
        )
        reference = _field(row, reference_field, line_number)
        rows.append((line_number, response, reference))
    return rows


def score_rows(
    rows: list[tuple[int, str | None, Any]], kind: str, processes: int, timeout_s: float
) -> list[dict[str, Any]]:
    """One result record per row. math-verify (and its worker pool) only runs, and the pool
    only starts, when the cheap checks leave something undecided."""
    from cgd.verify import Verdict, VerifierPool, fast_check

    verdicts: list[Verdict | None] = [fast_check(kind, r, g) for _, r, g in rows]
    pending = [i for i, v in enumerate(verdicts) if v is None]
    if pending:
        with VerifierPool(processes=processes, timeout_s=timeout_s) as pool:
            done = pool.verify_many([(kind, rows[i][1], rows[i][2]) for i in pending])
        for i, decided in zip(pending, done, strict=True):
            verdicts[i] = decided
    records = []
    for index, ((line, _, _), verdict) in enumerate(zip(rows, verdicts, strict=True)):
        assert verdict is not None  # every pending one was decided above
        records.append(
            {
                "index": index,
                "line": line,
                "correct": verdict.correct,
                "extracted": verdict.extracted,
                "reference": verdict.reference,
                "reason": verdict.reason,
            }
        )
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    correct = sum(r["correct"] is True for r in records)
    undecided = sum(r["correct"] is None for r in records)
    return {
        "n": n,
        "correct": correct,
        "incorrect": n - correct - undecided,
        "undecided": undecided,
        "accuracy": correct / n if n else 0.0,
    }


@app.command("score")
def score(
    file: Annotated[Path, typer.Argument(help="JSONL file, one object per line.")],
    response_field: Annotated[
        str, typer.Option("--response-field", "-r", help="Field holding the model's response.")
    ] = "response",
    reference_field: Annotated[
        str, typer.Option("--reference-field", "-g", help="Field holding the reference answer.")
    ] = "reference",
    kind: Annotated[str, typer.Option(help="Verifier: math | choice | exact.")] = "math",
    processes: Annotated[int, typer.Option(help="math-verify worker processes.")] = 1,
    timeout_s: Annotated[float, typer.Option(help="Per-item math-verify time limit (s).")] = 5.0,
) -> None:
    """Grade each row's response against its reference; JSON lines out, summary last."""
    if kind not in _SCORED_KINDS:
        typer.echo(f"error: --kind must be one of {', '.join(_SCORED_KINDS)}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        rows = read_rows(file, response_field, reference_field)
    except BadInput as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    records = score_rows(rows, kind, max(1, processes), timeout_s)
    out = sys.stdout
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.write(json.dumps(summarize(records)) + "\n")
    out.flush()
