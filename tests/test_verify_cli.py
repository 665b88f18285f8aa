"""``cgd verify score``: per-row JSON, a summary last, and bad input named by line and field."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.cli import app

runner = CliRunner()


def _write(path: Path, rows: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _score(*args: str):
    return runner.invoke(app, ["verify", "score", *args])


def test_score_prints_rows_then_summary(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "r.jsonl",
        [
            {"out": r"so \boxed{4.5 \times 10^{33}}", "gold": "4.5e33"},
            {"out": "The answer is 18 dollars.", "gold": "#### 18"},
            "",
            {"out": r"\boxed{x^2+2x+1}", "gold": "(x+1)^2"},  # needs math-verify
            {"out": "I think 7", "gold": "#### 8"},
        ],
    )
    result = _score(str(path), "--response-field", "out", "--reference-field", "gold")
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    rows, summary = lines[:-1], lines[-1]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["line"] for r in rows] == [1, 2, 4, 5]
    assert [r["correct"] for r in rows] == [True, True, True, False]
    assert rows[0]["extracted"] == r"4.5 \times 10^{33}" and rows[1]["reference"] == "18"
    assert summary == {"n": 4, "correct": 3, "incorrect": 1, "undecided": 0, "accuracy": 0.75}


def test_choice_and_exact_kinds(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.jsonl",
        [{"r": "The answer is (C).", "g": "C"}, {"r": "Answer: B", "g": "C"}],
    )
    result = _score(str(path), "-r", "r", "-g", "g", "--kind", "choice")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[-1])["correct"] == 1
    path = _write(tmp_path / "e.jsonl", [{"r": " Paris ", "g": "paris"}])
    result = _score(str(path), "-r", "r", "-g", "g", "--kind", "exact")
    assert json.loads(result.stdout.splitlines()[-1])["accuracy"] == 1.0


def test_nested_field_and_numeric_reference(tmp_path: Path) -> None:
    path = _write(tmp_path / "n.jsonl", [{"r": r"\boxed{27}", "meta": {"answer": 27.0}}])
    result = _score(str(path), "-r", "r", "-g", "meta.answer")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["correct"] is True


def test_missing_field_names_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.jsonl", [{"r": "1", "g": "1"}, {"r": "1", "gold": "1"}])
    result = _score(str(path), "-r", "r", "-g", "g")
    assert result.exit_code == 2
    assert "line 2: missing field 'g'" in result.output
    assert result.stdout.count("{") == 0  # nothing scored


def test_bad_json_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "b.jsonl", [{"r": "1", "g": "1"}, "", '{"r": "1",', {"r": 1}])
    result = _score(str(path), "-r", "r", "-g", "g")
    assert result.exit_code == 2
    assert "line 3: bad JSON" in result.output


def test_not_an_object_wrong_type_unknown_kind_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", ["[1, 2]"])
    assert "line 1: expected a JSON object" in _score(str(path), "-r", "r", "-g", "g").output
    path = _write(tmp_path / "t.jsonl", [{"r": ["x"], "g": "1"}])
    result = _score(str(path), "-r", "r", "-g", "g")
    assert result.exit_code == 2 and "field 'r' must be a string" in result.output
    result = _score(str(path), "-r", "r", "-g", "g", "--kind", "regex")
    assert result.exit_code == 2 and "--kind" in result.output
    result = _score(str(tmp_path / "absent.jsonl"), "-r", "r", "-g", "g")
    assert result.exit_code == 2 and "cannot read" in result.output
