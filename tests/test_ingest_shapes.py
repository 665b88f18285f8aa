"""Readers for .json arrays and chat-format rows: element by element, errors naming the index
or the turn, the same limits as JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cgd.datasets import json_array
from cgd.datasets.errors import DatasetTooLarge, InvalidDataset
from cgd.datasets.ingest import FieldMap, Limits, iter_rows


def rows_of(path: Path, fmt: str = "json", limits: Limits | None = None, **fields: Any) -> list:
    return list(iter_rows(path, fmt, FieldMap(**fields), limits or Limits()))


def write(tmp_path: Path, text: str | bytes, name: str = "d.json") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_a_json_array_reads_like_jsonl_at_any_block_boundary(tmp_path, monkeypatch, block) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(json_array, "_READ_BYTES", block)
    data = [
        {
            "question": f"q{i} é \\u00e9 {{[",
            "answer": i * 1.5,
            "id": f"x{i}",
            "tags": [i, {"a": None}],
        }
        for i in range(30)
    ]
    path = write(tmp_path, "\ufeff" + json.dumps(data, indent=1, ensure_ascii=False))
    rows = rows_of(path)
    assert [r.prompt for r in rows] == [d["question"] for d in data]
    assert [r.reference for r in rows] == [json.dumps(d["answer"]) for d in data]
    assert [r.line for r in rows] == list(range(1, 31))  # the 1-based element
    assert rows[4].extra == {"id": "x4", "tags": [4, {"a": None}]}
    assert rows_of(write(tmp_path, json.dumps(data, separators=(",", ":")), "c.json")) == rows


@pytest.mark.parametrize(
    ("text", "index", "reason"),
    [
        ('{"question": "q"}', None, "one JSON array of objects"),
        ("[]", None, "no rows"),
        ('[{"question": "a"}, 3]', 1, "must be a JSON object, got int"),
        ('[{"question": "a"}, {"question": "b",}]', 1, "malformed JSON"),
        ('[{"question": "a"} {"question": "b"}]', 0, "expected ',' or ']'"),
        ('[{"question": "a"}, {"question": "b"}', 1, "expected ',' or ']'"),
        ('[{"question": "a"},', 1, "not closed"),
        ('[{"question": "a"}] x', None, "after the closing"),
        ('[{"question": "a"}, {"question": NaN}]', 1, "malformed JSON"),
        ('[{"question": "a"}, {"question": "b\\u0000"}]', 1, "NUL"),
        ('[{"question": "a"}, {"text": "b"}]', 1, "missing prompt field"),
        ('[{"question": "a", "x": ' + "[" * 100 + "]" * 100 + "}]", 0, "nesting deeper"),
        (b'[{"question": "a"}, {"question": "\xff"}]', None, "UTF-8 at byte 34"),
    ],
)
def test_json_array_errors_name_the_index(tmp_path, text, index, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidDataset) as err:
        rows_of(write(tmp_path, text))
    detail = err.value.detail
    assert reason in detail["reason"], detail
    assert "line" not in detail and detail.get("index") == index, detail


def test_json_array_limits_are_jsonl_limits(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(json_array, "_READ_BYTES", 64)
    big = json.dumps([{"question": "a"}, {"question": "b" * 5000}])
    with pytest.raises(InvalidDataset, match="longer than the limit") as err:
        rows_of(write(tmp_path, big), limits=Limits(max_line_bytes=1000))
    assert err.value.detail["index"] == 1
    many = json.dumps([{"question": str(i)} for i in range(5)])
    with pytest.raises(DatasetTooLarge) as too_many:
        rows_of(write(tmp_path, many), limits=Limits(max_items=4))
    assert too_many.value.detail["index"] == 4
    with pytest.raises(DatasetTooLarge, match="CGD_MAX_DECOMPRESSED_BYTES"):
        rows_of(write(tmp_path, many), limits=Limits(max_decompressed_bytes=50))


def _chat(tmp_path: Path, rows: list[dict[str, Any]], **fields: Any) -> list:
    path = write(tmp_path, "".join(json.dumps(r) + "\n" for r in rows), "c.jsonl")
    return rows_of(path, "jsonl", **fields)


def test_chat_rows_prompt_and_reference(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sys_, q1, a1, q2 = "Be brief.", "What is 2+2?", "4", "And 3+3?"
    rows = _chat(
        tmp_path,
        [
            {"messages": [{"role": "user", "content": q1}, {"role": "assistant", "content": a1}]},
            {"messages": [{"role": "system", "content": sys_}, {"role": "user", "content": q1}]},
            {
                "messages": [
                    {"role": "user", "content": q1},
                    {"role": "assistant", "content": a1},
                    {"role": "user", "content": q2},
                    {"role": "assistant", "content": "6 (final turn)"},
                ],
                "answer": "6",
                "source": "s",
            },
            {"question": "plain row", "difficulty": 2},
        ],
    )
    assert [r.prompt for r in rows] == [
        q1,
        f"System: {sys_}\n\nUser: {q1}",
        f"User: {q1}\n\nAssistant: {a1}\n\nUser: {q2}",
        "plain row",
    ]
    # The final assistant turn, unless a reference field names one (which wins).
    assert [r.reference for r in rows] == [a1, None, "6", None]
    assert [r.extra for r in rows] == [None, None, {"source": "s"}, {"difficulty": 2}]


@pytest.mark.parametrize(
    ("messages", "field", "reason"),
    [
        ([], "messages", "empty conversation"),
        (["hi"], "messages[0]", "must be an object"),
        ([{"role": "tool", "content": "x"}], "messages[0].role", "must be one of"),
        ([{"role": "user", "content": 3}], "messages[0].content", "must be a string"),
        (
            [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}],
            "messages[1].role",
            "only open",
        ),
        ([{"role": "assistant", "content": "a"}], "messages", "no user turn"),
        ([{"role": "user", "content": "  "}], "messages[0].content", "empty prompt"),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "assistant", "content": "b"},
            ],
            "messages[2]",
            "at most one assistant turn",
        ),
    ],
)
def test_bad_chat_rows_name_the_turn(tmp_path, messages, field, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidDataset) as err:
        _chat(tmp_path, [{"messages": [{"role": "user", "content": "ok"}]}, {"messages": messages}])
    detail = err.value.detail
    assert detail["line"] == 2 and detail["field"] == field and reason in detail["reason"], detail
