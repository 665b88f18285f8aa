"""Streaming export of snapshot triplets as training files (JSONL or Parquet), constant memory.

Pipeline: triplet dicts -> ``iter_export_rows`` (one layout/mode row each) -> ``iter_jsonl_bytes``
or ``iter_parquet_bytes`` -> bytes an HTTP response can stream. Everything is a generator: at most
two Parquet row groups (``batch_rows`` rows each) or one JSONL chunk are held at a time.

Layouts:
- ``native``: every triplet field + ``split`` + ``lineage``; it takes no mode (passing one is an
  error, not silently ignored). ``lineage`` is a JSON string in every format: its model settings
  are open-ended and a Parquet file needs one schema, so JSONL says the same.
- ``messages``: ``{"messages": [user, assistant]}`` (chat SFT, OpenAI/TRL style ``role/content``)
- ``sharegpt``: ``{"conversations": [{"from": "human", "value"}, {"from": "gpt", "value"}]}``
  (LLaMA-Factory's default sharegpt columns and tags)
- ``prompt-completion``: ``{"prompt": [user], "completion": [assistant]}`` (TRL conversational)
- ``alpaca``: ``{"instruction", "input", "output"}`` (LLaMA-Factory alpaca; the whole user turn is
  the instruction and ``input`` is empty so the text is identical across layouts)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cgd.curation.extra_columns import (
    ExtraColumns,
    arrow_type,
    arrow_value,
    column_names,
    flat_schema,
)
from cgd.curation.formats import (
    Mode,
    build_input,
    check_mode,
    fields_read,
    missing_field,
    target,
)
from cgd.curation.split import split_name
from cgd.enums import ExportLayout, Split

Layout = ExportLayout
LAYOUTS: tuple[Layout, ...] = tuple(ExportLayout)
SPLITS: tuple[str, ...] = tuple(Split)
DEFAULT_MODE = Mode.cgd

NATIVE_FIELDS: tuple[str, ...] = (
    "triplet_id",
    "job_id",
    "item_id",
    "sample",
    "prompt",
    "reference",
    "solution",
    "initial_response",
    "critique",
    "verdict",
    "refined_response",
    "teacher_solution",
    "initial_correct",
    "refined_correct",
    "status",
    "error",
    "truncated",
    "split",
    "lineage",
)

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_SHAREGPT = pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))
_NATIVE_TYPES = {
    "sample": pa.int64(),
    "initial_correct": pa.bool_(),
    "refined_correct": pa.bool_(),
    "truncated": pa.bool_(),
}

SCHEMAS: dict[Layout, pa.Schema] = {
    Layout.native: pa.schema([(f, _NATIVE_TYPES.get(f, pa.string())) for f in NATIVE_FIELDS]),
    Layout.messages: pa.schema([("messages", _MESSAGES)]),
    Layout.prompt_completion: pa.schema([("prompt", _MESSAGES), ("completion", _MESSAGES)]),
    Layout.alpaca: pa.schema(
        [("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]
    ),
    Layout.sharegpt: pa.schema([("conversations", _SHAREGPT)]),
}

_FLAT = (ExportLayout.native, ExportLayout.alpaca)


def extra_names(layout: Layout, extra: ExtraColumns) -> dict[str, str]:
    """Extra column -> its column in a flat ``layout`` (``{}`` for chat layouts: metadata)."""
    if layout not in _FLAT:
        return {}
    return column_names(extra, SCHEMAS[layout].names)


def schema_for(layout: str, extra: ExtraColumns | None = None) -> pa.Schema:
    """``layout``'s Parquet schema with the snapshot's extra columns: their own columns in a
    flat layout, a ``metadata`` struct in a chat layout."""
    checked = check_layout(layout)
    schema = SCHEMAS[checked]
    if not extra:
        return schema
    if checked in _FLAT:
        return flat_schema(schema, extra)
    metadata = pa.struct([pa.field(n, arrow_type(k)) for n, k in extra.items()])
    return pa.schema([*schema, pa.field("metadata", metadata)])


# Rows per Parquet row group. Memory per export is ~10x one batch of text (the batch being built,
# the one being written, Arrow arrays, writer pages, output buffer): ~40 MiB at 1024 rows of
# ~3 KB; 4096 rows gains no speed and needs ~120 MiB.
DEFAULT_BATCH_ROWS = 1024
_PARQUET_BUFFER = 8 << 20  # above one compressed row group of DEFAULT_BATCH_ROWS long answers
_JSONL_CHUNK_BYTES = 1 << 18


@dataclass
class ExportStats:
    """Filled in while rows stream; read it after the generator is exhausted."""

    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def check_layout(layout: str) -> Layout:
    try:
        return Layout(layout)
    except ValueError:
        raise ValueError(
            f"unknown layout {layout!r}; known: {[x.value for x in LAYOUTS]}"
        ) from None


def check_split(split: str) -> str:
    try:
        return Split(split).value
    except ValueError:
        raise ValueError(
            f"unknown split {split!r}; known: {list(SPLITS)} (val = validation)"
        ) from None


def check_mode_for(layout: Layout, mode: str | None) -> Mode:
    """The mode a layout is shaped by; ``native`` holds every field and refuses one."""
    if layout == Layout.native:
        if mode is not None:
            raise ValueError(
                "layout native exports every triplet field; a mode applies only to the "
                "training layouts (messages, sharegpt, prompt-completion, alpaca)"
            )
        return DEFAULT_MODE  # unused
    return check_mode(mode if mode is not None else DEFAULT_MODE)


def fields_for(layout: str, mode: str | None) -> tuple[str, ...] | None:
    """The triplet fields an export of ``layout``/``mode`` reads (``split`` included); None
    for every field (``native``). A database read of only these is much cheaper: decoding
    columns nobody uses was a third of the export's time on ~3 KB rows."""
    checked = check_layout(layout)
    if checked == Layout.native:
        return None
    return ("split", "extra", *fields_read(check_mode_for(checked, mode)))


def lineage_text(lineage: Any) -> str | None:
    """``lineage`` as exports carry it: canonical JSON text (one type in every format)."""
    if lineage is None or isinstance(lineage, str):
        return lineage
    return orjson.dumps(lineage, option=orjson.OPT_SORT_KEYS).decode()


def native_row(t: Mapping[str, Any]) -> dict[str, Any]:
    """The triplet in the ``native`` layout (also what a snapshot's content hash covers)."""
    row = {f: t.get(f) for f in NATIVE_FIELDS}
    row["split"] = split_name(t.get("split"))
    row["truncated"] = bool(t.get("truncated"))
    if row["reference"] is not None and not isinstance(row["reference"], str):
        row["reference"] = str(row["reference"])  # numeric reference columns; schema says text
    return row


def iter_export_rows(
    triplets: Iterable[Mapping[str, Any]],
    layout: str,
    mode: str | None = None,
    split: str = "all",
    stats: ExportStats | None = None,
    extra: ExtraColumns | None = None,
) -> Iterator[dict[str, Any]]:
    """One row of ``layout`` per triplet of ``split``; triplets the mode cannot use are skipped.

    ``extra``: the snapshot's extra columns (``cgd.curation.extra_columns``), read from each
    triplet's ``extra`` and written on every row (null where a row lacks one).

    ``mode`` defaults to cgd for the training layouts; ``native`` refuses one. A triplet without
    a ``split`` key counts as train (a snapshot without a validation split). Skips are counted
    in ``stats.skipped`` as ``missing_<field>`` (e.g. sft without a reference). Arguments are
    checked on the call, not on the first row, so an HTTP layer can answer 422 before it starts
    a streaming response.
    """
    checked_layout = check_layout(layout)
    checked_mode = check_mode_for(checked_layout, mode)
    checked_split = check_split(split)
    stats = stats if stats is not None else ExportStats()
    return _export_rows(triplets, checked_layout, checked_mode, checked_split, stats, extra or {})


def _export_rows(
    triplets: Iterable[Mapping[str, Any]],
    layout: Layout,
    m: Mode,
    split: str,
    stats: ExportStats,
    extra: ExtraColumns,
) -> Iterator[dict[str, Any]]:
    flat = extra_names(layout, extra)
    for t in triplets:
        if split != "all" and split_name(t.get("split")) != split:
            continue
        row = _layout_row(t, layout, m, stats)
        if row is None:
            continue
        if extra:
            values = t.get("extra") or {}
            if flat:
                row.update({col: values.get(name) for name, col in flat.items()})
            else:
                row["metadata"] = {name: values.get(name) for name in extra}
        yield row


def _layout_row(
    t: Mapping[str, Any], layout: Layout, m: Mode, stats: ExportStats
) -> dict[str, Any] | None:
    if layout == "native":
        stats.rows += 1
        row = native_row(t)
        row["lineage"] = lineage_text(row["lineage"])
        return row
    missing = missing_field(m, t)
    if missing is not None:
        stats.skipped[f"missing_{missing}"] += 1
        return None
    user, answer = build_input(m, t), target(m, t)
    stats.rows += 1
    if layout == "messages":
        return {
            "messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": answer},
            ]
        }
    if layout == Layout.sharegpt:
        return {
            "conversations": [
                {"from": "human", "value": user},
                {"from": "gpt", "value": answer},
            ]
        }
    if layout == Layout.prompt_completion:
        return {
            "prompt": [{"role": "user", "content": user}],
            "completion": [{"role": "assistant", "content": answer}],
        }
    return {"instruction": user, "input": "", "output": answer}


# ---- JSONL -------------------------------------------------------------------------------------


def iter_jsonl_bytes(
    rows: Iterable[Mapping[str, Any]], chunk_bytes: int = _JSONL_CHUNK_BYTES
) -> Iterator[bytes]:
    """JSON Lines, yielded in chunks of about ``chunk_bytes`` (fewer, larger writes to a socket)."""
    parts: list[bytes] = []
    size = 0
    dumps = orjson.dumps
    for row in rows:
        line = dumps(row, option=orjson.OPT_APPEND_NEWLINE)
        parts.append(line)
        size += len(line)
        if size >= chunk_bytes:
            yield b"".join(parts)
            parts.clear()
            size = 0
    if parts:
        yield b"".join(parts)


def write_jsonl(rows: Iterable[Mapping[str, Any]], fileobj: BinaryIO) -> int:
    """Write rows as JSON Lines to a binary file; returns the number of bytes written."""
    written = 0
    for chunk in iter_jsonl_bytes(rows):
        fileobj.write(chunk)
        written += len(chunk)
    return written


# ---- Parquet -----------------------------------------------------------------------------------


class _ChunkSink:
    """Write-only file for ParquetWriter; the generator takes its bytes after each row group."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0
        self.closed = False

    def write(self, data: Any) -> int:
        b = bytes(data)  # pyarrow may reuse the buffer it hands us
        self._parts.append(b)
        self._pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _messages_array(column: list[Any], type_: pa.DataType = _MESSAGES) -> pa.Array:
    # Built from flat role/content arrays: ~4x faster than letting pyarrow convert nested dicts.
    role_key, content_key = (f.name for f in type_.value_type)
    roles: list[str] = []
    contents: list[str] = []
    offsets = [0]
    for msgs in column:
        for msg in msgs:
            roles.append(msg[role_key])
            contents.append(msg[content_key])
        offsets.append(len(roles))
    structs = pa.StructArray.from_arrays(
        [pa.array(roles, pa.string()), pa.array(contents, pa.string())],
        fields=list(type_.value_type),
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), structs, type=type_)


def _record_batch(rows: list[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for f in schema:
        column = [r.get(f.name) for r in rows]
        if f.type in (_MESSAGES, _SHAREGPT):
            arrays.append(_messages_array(column, f.type))
            continue
        if f.name == "lineage":
            column = [lineage_text(v) for v in column]
        elif pa.types.is_struct(f.type):  # the extra columns' metadata
            subs = list(f.type)
            column = [
                None if v is None else {s.name: arrow_value(v.get(s.name), s.type) for s in subs}
                for v in column
            ]
        elif not pa.types.is_string(f.type) or any(
            v is not None and not isinstance(v, str) for v in column
        ):
            column = [arrow_value(v, f.type) for v in column]
        arrays.append(pa.array(column, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def iter_parquet_bytes(
    rows: Iterable[Mapping[str, Any]],
    layout: str,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    compression: str = "snappy",
    extra: ExtraColumns | None = None,
) -> Iterator[bytes]:
    """A Parquet file of ``layout``'s schema (with the extra columns), one row group at a time."""
    return _parquet_chunks(rows, schema_for(layout, extra), batch_rows, compression)


def _parquet_chunks(
    rows: Iterable[Mapping[str, Any]], schema: pa.Schema, batch_rows: int, compression: str
) -> Iterator[bytes]:
    sink = _ChunkSink()
    # pyarrow releases the GIL while it encodes and compresses a row group, so a writer thread
    # does that while this thread builds the next batch from Python objects (~1.4x rows/s with a
    # second core). The Arrow-side buffer keeps the writer thread from calling into Python (and
    # waiting for the GIL) on every page: it is flushed into the sink here, between writes.
    out = pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), buffer_size=_PARQUET_BUFFER)
    # Snappy: ~1.2x faster than zstd here for ~1.4x the bytes. No dictionaries: long unique texts
    # only waste the attempt.
    writer = pq.ParquetWriter(out, schema, compression=compression, use_dictionary=False)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-export")
    pending: Future[None] | None = None
    try:
        for batch in _batched(rows, batch_rows):
            record_batch = _record_batch(batch, schema)
            if pending is not None:
                pending.result()
                out.flush()
                if chunk := sink.take():
                    yield chunk
            pending = pool.submit(writer.write_batch, record_batch)
        if pending is not None:
            pending.result()
    finally:
        if pending is not None and not pending.done():  # consumer stopped early (client gone)
            pending.exception()
        pool.shutdown()
        writer.close()
        out.close()
    if chunk := sink.take():
        yield chunk


def _batched(rows: Iterable[Mapping[str, Any]], n: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(rows)
    while batch := list(islice(it, n)):
        yield batch


def write_parquet(
    rows: Iterable[Mapping[str, Any]],
    layout: str,
    fileobj: BinaryIO,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    extra: ExtraColumns | None = None,
) -> int:
    """Write rows as Parquet to a binary file; returns the number of bytes written."""
    written = 0
    for chunk in iter_parquet_bytes(rows, layout, batch_rows, extra=extra):
        fileobj.write(chunk)
        written += len(chunk)
    return written
