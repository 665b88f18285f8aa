"""Export layouts x modes as JSONL and Parquet, read back with `datasets`; streaming; the card."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cgd.curation.card import build_card, render_markdown
from cgd.curation.export import (
    LAYOUTS,
    ExportStats,
    iter_export_rows,
    iter_jsonl_bytes,
    iter_parquet_bytes,
    write_jsonl,
    write_parquet,
)
from cgd.curation.formats import INPUT_TEMPLATES, MODES, build_input, missing_field, target
from cgd.curation.snapshot import curate
from cgd.curation.synthetic import make_triplet, synthetic_triplets
from cgd.templates import CGD_TRAIN_INSTRUCTION

os.environ.setdefault("HF_HUB_OFFLINE", "1")

COMBOS = [("native", None)] + [(lay, m) for lay in LAYOUTS if lay != "native" for m in MODES]


def _triplets() -> list[dict]:
    rows = [make_triplet(i, split="val" if i % 4 == 0 else "train") for i in range(12)]
    # Texts that break naive formatting: braces, quotes, newlines, unicode.
    rows[1]["prompt"] = 'Find {x} if "x" = \\frac{1}{2}\nand y = 3 — ünïcödé'
    rows[2]["reference"] = None  # no reference: skipped by sft only
    rows[3]["reference"] = 27.0  # numeric reference column
    rows[5]["initial_response"] = None  # dataset without responses: only sft/distill use it
    return rows


def _load(path: Path, fmt: str, cache: Path) -> list[dict]:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(cache))
    return ds.to_list()


@pytest.mark.parametrize(("layout", "mode"), COMBOS)
def test_layout_mode_roundtrip_through_datasets(
    layout: str, mode: str | None, tmp_path: Path
) -> None:
    triplets = _triplets()
    stats = ExportStats()
    rows = list(iter_export_rows(triplets, layout, mode, stats=stats))
    expected_skips = {
        "sft": {"missing_reference": 1},
        "cgd": {"missing_initial_response": 1},
        "cft": {"missing_initial_response": 1},
        "no-critique": {"missing_initial_response": 1},
        "distill": {},
    }
    assert dict(stats.skipped) == ({} if mode is None else expected_skips[mode])
    assert stats.rows == len(rows) == len(triplets) - sum(stats.skipped.values())

    jsonl, parquet = tmp_path / "x.jsonl", tmp_path / "x.parquet"
    with jsonl.open("wb") as f:
        write_jsonl(rows, f)
    with parquet.open("wb") as f:
        write_parquet(rows, layout, f, batch_rows=5)  # several row groups

    assert _load(jsonl, "json", tmp_path / "c1") == rows
    # lineage is a JSON string in both formats, so the two read back identical.
    assert _load(parquet, "parquet", tmp_path / "c2") == rows
    assert pq.ParquetFile(parquet).metadata.num_row_groups == -(-len(rows) // 5)


def test_row_shapes_and_cgd_input() -> None:
    t = make_triplet(3)
    (msg,) = iter_export_rows([t], "messages", "cgd")
    user = msg["messages"][0]["content"]
    assert user.startswith(CGD_TRAIN_INSTRUCTION)
    assert f"Question: {t['prompt']}" in user
    assert f"Student's Initial Answer: {t['initial_response']}" in user
    assert user.endswith(f"Critique: {t['critique']}")
    assert msg["messages"][1] == {"role": "assistant", "content": t["refined_response"]}
    (pc,) = iter_export_rows([t], "prompt-completion", "cgd")
    assert pc == {
        "prompt": [{"role": "user", "content": user}],
        "completion": [{"role": "assistant", "content": t["refined_response"]}],
    }
    (al,) = iter_export_rows([t], "alpaca", "cgd")
    assert al == {"instruction": user, "input": "", "output": t["refined_response"]}
    (sg,) = iter_export_rows([t], "sharegpt")  # the mode defaults to cgd
    assert sg == {
        "conversations": [
            {"from": "human", "value": user},
            {"from": "gpt", "value": t["refined_response"]},
        ]
    }
    # sft: a bare reference answer gets its box (issue 12: every target ends in \\boxed{}).
    assert (
        build_input("sft", t) == t["prompt"] and target("sft", t) == f"\\boxed{{{t['reference']}}}"
    )
    assert target("cft", t) == t["critique"] and "Critique" not in build_input("cft", t)
    assert "Critique" not in build_input("no-critique", t)
    assert set(INPUT_TEMPLATES) == set(MODES)


def test_inputs_are_the_templates_filled_verbatim() -> None:
    """build_input joins the template's pieces: the same text as ``str.format_map``, braces in
    the values kept as they are; a numeric prompt becomes text."""
    t = {
        "prompt": "Is {x} in {1, 2}?",
        "initial_response": "No: {x} \\boxed{no}",
        "critique": "{0} is {not} a field",
        "refined_response": "\\boxed{yes}",
        "teacher_solution": "\\boxed{yes}",
        "reference": "yes",
    }
    for m in MODES:
        assert build_input(m, t) == INPUT_TEMPLATES[m].format_map(t), m
    assert build_input("sft", {**t, "prompt": 12}) == "12"


def test_missing_field_per_mode() -> None:
    full = make_triplet(1)
    assert all(missing_field(m, full) is None for m in MODES)
    assert missing_field("cgd", {**full, "critique": ""}) == "critique"
    assert missing_field("cft", {**full, "refined_response": None}) is None  # not read by cft
    assert missing_field("distill", {**full, "teacher_solution": None}) == "teacher_solution"
    # sft's target is the worked solution, else the reference answer
    assert missing_field("sft", {**full, "solution": None}) is None
    assert missing_field("sft", {**full, "solution": "", "reference": None}) == "reference"
    assert missing_field("sft", {**full, "solution": "work", "reference": None}) is None


def test_split_selection_and_native_fields() -> None:
    rows = _triplets()
    # Rows stored as "val" (before the rename) and the alias "val" both mean validation.
    val = list(iter_export_rows(rows, "native", split="val"))
    assert [r["item_id"] for r in val] == [f"item-{i:06d}" for i in (0, 4, 8)]
    assert all(r["split"] == "validation" for r in val)
    assert list(iter_export_rows(rows, "native", split="validation")) == val
    assert len(list(iter_export_rows(rows, "messages", "distill", split="train"))) == 9
    native = val[0]
    assert isinstance(native["lineage"], str)
    assert json.loads(native["lineage"])["template_version"] == "cgd-v1"
    assert list(native)[:3] == ["triplet_id", "job_id", "item_id"]
    # Bad arguments fail on the call (before an HTTP layer would start streaming).
    with pytest.raises(ValueError, match="mode applies only"):
        iter_export_rows(rows, "native", "cgd")
    with pytest.raises(ValueError):
        iter_export_rows(rows, "sharegpt-v2", "cgd")
    with pytest.raises(ValueError):
        iter_export_rows(rows, "messages", "dpo")
    with pytest.raises(ValueError):
        iter_export_rows(rows, "messages", "cgd", split="test")
    with pytest.raises(ValueError):
        iter_parquet_bytes([], "sharegpt-v2")


class _Counting:
    """A triplet source that records how far it has been read."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read = 0

    def __iter__(self) -> Iterator[dict]:
        for t in synthetic_triplets(self.n, prompt_chars=60, answer_chars=120, pool=64):
            self.read += 1
            yield t


def test_exports_stream_lazily() -> None:
    src = _Counting(100_000)
    parquet = iter_parquet_bytes(
        iter_export_rows(src, "messages", "cgd"), "messages", batch_rows=500
    )
    first = next(parquet)
    # One row group is written while the next is built: two batches read, not the whole input.
    assert first.startswith(b"PAR1") and src.read <= 2 * 500
    parquet.close()  # a client hanging up: the writer is closed, nothing else is read
    src = _Counting(100_000)
    jsonl = iter_jsonl_bytes(iter_export_rows(src, "native"), chunk_bytes=1 << 16)
    next(jsonl)
    assert src.read < 200


def _peak_mib(fmt: str, rows: int) -> tuple[float, float]:
    """Peak Python (tracemalloc) and Arrow (sampled per chunk) memory of one export, in MiB."""
    src = synthetic_triplets(rows, prompt_chars=40, answer_chars=60, pool=64)
    out = iter_export_rows(src, "messages", "cgd")
    chunks = iter_jsonl_bytes(out) if fmt == "jsonl" else iter_parquet_bytes(out, "messages")
    arrow_peak = 0
    tracemalloc.start()
    for _ in chunks:
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20, arrow_peak / 2**20


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_peak_memory_does_not_grow_with_rows(fmt: str) -> None:
    (py_small, arrow_small), (py_large, arrow_large) = (
        _peak_mib(fmt, 10_000),
        _peak_mib(fmt, 40_000),
    )
    assert py_large < py_small * 1.3 + 0.5, (py_small, py_large)
    assert arrow_large < arrow_small * 1.3 + 0.5, (arrow_small, arrow_large)


def test_200k_rows_stream_without_materialising() -> None:
    psutil = pytest.importorskip("psutil")
    proc = psutil.Process()
    before = proc.memory_info().rss
    src = synthetic_triplets(200_000, prompt_chars=300, answer_chars=1000, pool=256)
    rows = size = 0
    growth = 0
    for chunk in iter_jsonl_bytes(iter_export_rows(src, "messages", "cgd"), chunk_bytes=1 << 20):
        size += len(chunk)
        rows += chunk.count(b"\n")
        growth = max(growth, proc.memory_info().rss - before)
    assert rows == 200_000
    # ~700 MB went through; materialising it would show up here many times over.
    assert size > 500 * 2**20
    assert growth < 64 * 2**20, growth / 2**20


def test_parquet_bytes_equal_a_plain_write() -> None:
    rows = list(iter_export_rows(_triplets(), "alpaca", "distill"))
    streamed = b"".join(iter_parquet_bytes(rows, "alpaca", batch_rows=4))
    assert pq.read_table(io.BytesIO(streamed)).to_pylist() == rows
    empty = pq.read_table(io.BytesIO(b"".join(iter_parquet_bytes([], "messages"))))
    assert empty.num_rows == 0 and empty.schema.names == ["messages"]


def test_card_json_and_markdown() -> None:
    rows = [make_triplet(i) for i in range(8)] + [make_triplet(50, status="failed")]
    lin = dict(rows[0]["lineage"])
    lin["teacher"] = {**lin["teacher"], "api_key": "sk-secret", "base_url": "http://u:p@host/v1"}
    rows[1] = dict(rows[1], lineage=lin)
    spec = {"name": "gsm8k-cgd", "decontaminate": {"sets": ["math500"]}}
    result = curate(rows, spec)
    card = build_card(
        name="gsm8k-cgd",
        spec=spec,
        stats=result.stats,
        content_hash=result.content_hash,
        lineage=result.lineage,
    )
    json.dumps(card)  # JSON-able
    assert card["counts"] == {"output": 8, "train": 8, "val": 0, "items": 8}
    assert card["content_hash"] == result.content_hash
    assert card["modes"]["cgd"]["input_template"].startswith(CGD_TRAIN_INSTRUCTION)
    assert card["curation"]["decontaminate"]["sets"] == ["math500"]
    md = render_markdown(card)
    assert "sk-secret" not in json.dumps(card) + md and "u:p@" not in md
    assert result.content_hash in md and "| incomplete | 1 |" in md
    assert "Student's Initial Answer: {initial_response}" in md


def test_extra_columns_types_collisions_and_missing_values() -> None:
    """Types per column (mixed int/float is double, a list or mixed types is JSON text in
    Parquet), a name a flat layout already has gets the extra_ prefix, a row without a column
    has null there; JSONL keeps every value as uploaded."""
    from cgd.curation.extra_columns import ExtraColumnsSeen

    extras = [
        {"id": 7, "status": "draft", "score": 1, "tags": ["a", 1], "mixed": "x"},
        {"id": 8, "status": "final", "score": 2.5, "tags": [], "mixed": 3},
        {"id": 9},
    ]
    trips = [make_triplet(i, extra=e) for i, e in enumerate(extras)]
    seen = ExtraColumnsSeen()
    for t in trips:
        seen.observe(t["extra"])
    kinds = seen.result()
    assert kinds == {
        "id": "int64", "status": "string", "score": "double", "tags": "json", "mixed": "json"
    }  # fmt: skip
    native = list(iter_export_rows(trips, "native", extra=kinds))
    assert [r["status"] for r in native] == ["verified"] * 3  # the triplet's own column
    assert [r["extra_status"] for r in native] == ["draft", "final", None]
    assert [r["tags"] for r in native] == [["a", 1], [], None]  # JSONL: as uploaded
    table = pq.read_table(
        io.BytesIO(b"".join(iter_parquet_bytes(native, "native", extra=kinds)))
    ).to_pylist()
    assert [r["id"] for r in table] == [7, 8, 9]
    assert [r["score"] for r in table] == [1.0, 2.5, None]
    assert [r["tags"] for r in table] == ['["a",1]', "[]", None]
    assert [r["mixed"] for r in table] == ["x", "3", None]
    chat = list(iter_export_rows(trips, "sharegpt", "cgd", extra=kinds))
    assert chat[2]["metadata"] == {
        "id": 9, "status": None, "score": None, "tags": None, "mixed": None
    }  # fmt: skip
    loaded = pq.read_table(
        io.BytesIO(b"".join(iter_parquet_bytes(chat, "sharegpt", extra=kinds)))
    ).to_pylist()
    assert loaded[0]["metadata"] == {
        "id": 7, "status": "draft", "score": 1.0, "tags": '["a",1]', "mixed": "x"
    }  # fmt: skip
    # Without extra columns the layouts' schemas are as before.
    assert "metadata" not in next(iter_export_rows(trips, "messages", "cgd"))
