"""Streaming, validating readers for uploaded prompt datasets.

Every reader yields rows one at a time from a file on disk (the spooled upload), so memory stays
bounded whatever the file size. Any bad row raises :class:`InvalidDataset` naming the 1-based line
(the row number for Parquet) and the reason; the caller's transaction then writes nothing.
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cgd.datasets.chat import is_chat, read_chat
from cgd.datasets.errors import DatasetTooLarge, InvalidDataset
from cgd.datasets.json_array import json_array_records

FORMATS = ("jsonl", "jsonl.gz", "json", "csv", "parquet")
_EXTENSIONS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonl.gz": "jsonl.gz",
    ".ndjson.gz": "jsonl.gz",
    ".csv": "csv",
    ".parquet": "parquet",
}
# ``messages`` last: a row with both a prompt and a conversation is read by its prompt.
MESSAGES_FIELD = "messages"
PROMPT_DEFAULTS = ("prompt", "question", "problem", MESSAGES_FIELD)
REFERENCE_DEFAULTS = ("answer", "reference", "solution")
# A worked solution kept beside a short answer (MATH: `answer` + `solution`): sft trains on it.
SOLUTION_DEFAULTS = ("solution",)
MAX_ID_CHARS = 500


@dataclass(frozen=True)
class Limits:
    max_line_bytes: int = 8 * 1024**2
    max_json_depth: int = 64
    max_items: int = 5_000_000
    max_parquet_columns: int = 1024
    max_parquet_row_group_bytes: int = 256 * 1024**2
    max_decompressed_bytes: int = 4 * 1024**3


class _Budget:
    """Counts decoded bytes against ``CGD_MAX_DECOMPRESSED_BYTES`` as they are produced."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise DatasetTooLarge(
                f"the upload decodes to more than {self.limit} bytes",
                setting="CGD_MAX_DECOMPRESSED_BYTES",
            )


@dataclass
class FieldMap:
    """Which source field feeds which column; ``None`` = resolve from the first record."""

    prompt_field: str | None = None
    reference_field: str | None = None
    response_field: str | None = None
    id_field: str | None = None
    solution_field: str | None = None
    resolved: bool = field(default=False, repr=False)
    # Fields found by their default names rather than given: a row may use another default
    # (a chat row's ``messages`` among rows with a ``question``).
    auto_prompt: bool = field(default=False, repr=False)
    auto_reference: bool = field(default=False, repr=False)

    def resolve(self, first: dict[str, Any], line: int) -> None:
        self.auto_prompt = self.prompt_field is None
        self.auto_reference = self.reference_field is None
        if self.prompt_field is None:
            self.prompt_field = next((f for f in PROMPT_DEFAULTS if f in first), None)
            if self.prompt_field is None:
                raise InvalidDataset(
                    f"no prompt field: none of {list(PROMPT_DEFAULTS)} present; pass prompt_field",
                    line=line,
                )
        if self.reference_field is None:
            self.reference_field = next((f for f in REFERENCE_DEFAULTS if f in first), None)
        if self.solution_field is None:
            self.solution_field = next(
                (f for f in SOLUTION_DEFAULTS if f in first and f != self.reference_field), None
            )
        self.resolved = True

    def as_dict(self) -> dict[str, str | None]:
        return {
            "prompt_field": self.prompt_field,
            "reference_field": self.reference_field,
            "response_field": self.response_field,
            "id_field": self.id_field,
            "solution_field": self.solution_field,
        }


@dataclass(slots=True)
class Row:
    line: int
    item_id: str | None  # None: the caller numbers the row
    prompt: str
    reference: str | None
    response: str | None
    extra: dict[str, Any] | None
    solution: str | None = None


def detect_format(filename: str | None) -> str:
    name = (filename or "").lower()
    for ext in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return _EXTENSIONS[ext]
    raise InvalidDataset(
        f"unsupported file extension for {filename!r}: use one of {sorted(_EXTENSIONS)}",
        line=None,
        field="file",
    )


def iter_rows(path: Path, fmt: str, fields: FieldMap, limits: Limits) -> Iterator[Row]:
    """Validated rows of the file, in order. Raises InvalidDataset at the first bad one."""
    rows = _iter_rows(path, fmt, fields, limits)
    if fmt != "json":
        return rows
    return _by_index(rows)


def _by_index(rows: Iterator[Row]) -> Iterator[Row]:
    """A JSON array's errors name the 0-based element ``index`` (JSONL names the line)."""
    try:
        yield from rows
    except (InvalidDataset, DatasetTooLarge) as exc:
        raise at_index(exc) from None


def at_index(exc: InvalidDataset | DatasetTooLarge) -> InvalidDataset | DatasetTooLarge:
    """``exc`` with its 1-based element position as the 0-based array ``index``."""
    line = exc.detail.pop("line", None)
    if line is not None:
        exc.detail["index"] = line - 1
    return exc


def _iter_rows(path: Path, fmt: str, fields: FieldMap, limits: Limits) -> Iterator[Row]:
    records = {
        "jsonl": _jsonl_records,
        "jsonl.gz": _jsonl_gz_records,
        "json": json_array_records,
        "csv": _csv_records,
        "parquet": _parquet_records,
    }[fmt](path, limits)
    count = 0
    for line, record in records:
        count += 1
        if count > limits.max_items:
            raise DatasetTooLarge(
                f"more than {limits.max_items} rows", setting="CGD_MAX_DATASET_ITEMS", line=line
            )
        if not fields.resolved:
            fields.resolve(record, line)
        yield _to_row(record, line, fields, limits)
    if count == 0:
        raise InvalidDataset("the file has no rows", line=None)


# --- record sources: (line, dict) pairs ------------------------------------------------------


_READ_BYTES = 1024 * 1024
_NON_BLANK = re.compile(rb"[^ \t\r\n]")


def _read_lines(
    stream: Any, limits: Limits, csv_quotes: bool = False
) -> Iterator[tuple[int, bytes]]:
    """Non-blank physical lines with their 1-based numbers, read in 1 MiB blocks.

    Every decoded byte counts against the decompression budget, and no line is held whole
    before it is checked against the line limit. Runs of blank lines are skipped with C-level
    searches, so a file of newlines costs what any other bytes cost. With ``csv_quotes``, blank
    lines inside a quoted CSV cell (an odd number of quotes so far) are kept: they are data.
    """
    budget = _Budget(limits.max_decompressed_bytes)
    buf = b""
    pos = 0
    line_no = 1  # the number of the line that starts at ``pos``
    eof = False
    quotes = 0
    while True:
        start = pos
        if not (csv_quotes and quotes % 2):
            m = _NON_BLANK.search(buf, pos)
            if m is None:
                line_no += buf.count(b"\n", pos)
                buf, pos = b"", 0
                if eof:
                    return
                buf, eof = _more(stream, budget, buf)
                continue
            nl = buf.rfind(b"\n", pos, m.start())
            if nl >= 0:
                line_no += buf.count(b"\n", pos, nl + 1)
                start = nl + 1
        end = buf.find(b"\n", start)
        if end < 0 and not eof:
            if len(buf) - start > limits.max_line_bytes:
                raise InvalidDataset(
                    f"line is longer than the limit of {limits.max_line_bytes} bytes",
                    line=line_no,
                )
            buf, eof = _more(stream, budget, buf[start:])
            pos = 0
            continue
        stop = len(buf) if end < 0 else end + 1
        if stop == start:
            return
        if stop - start > limits.max_line_bytes:
            raise InvalidDataset(
                f"line is longer than the limit of {limits.max_line_bytes} bytes", line=line_no
            )
        line = buf[start:stop]
        if csv_quotes:
            quotes += line.count(b'"')
        yield line_no, line
        line_no += 1
        pos = stop


def _more(stream: Any, budget: _Budget, keep: bytes) -> tuple[bytes, bool]:
    """``keep`` plus the next block of the stream, and whether the stream is exhausted."""
    try:
        block = stream.read(_READ_BYTES)
    except (OSError, EOFError, zlib.error) as exc:  # corrupt gzip surfaces here
        raise InvalidDataset(f"corrupt compressed stream: {exc}", line=None) from None
    budget.spend(len(block))
    return keep + block, not block


def _jsonl_lines(stream: Any, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    for line_no, raw in _read_lines(stream, limits):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidDataset(
                f"invalid UTF-8 at byte {exc.start} of the line", line=line_no
            ) from None
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidDataset(f"malformed JSON: {exc.msg}", line=line_no) from None
        if not isinstance(value, dict):
            raise InvalidDataset(
                f"each line must be a JSON object, got {type(value).__name__}", line=line_no
            )
        yield line_no, value


def _jsonl_records(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as f:
        yield from _jsonl_lines(f, limits)


def _jsonl_gz_records(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as raw:
        if raw.read(2) != b"\x1f\x8b":
            raise InvalidDataset("not a gzip file (bad magic number)", line=1)
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw) as f:
            yield from _jsonl_lines(f, limits)


def _csv_records(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(limits.max_line_bytes)
    with open(path, "rb") as f:
        where = [1]  # the file line of the last line the reader took (blank runs are skipped)
        lines = _decoded_lines(_read_lines(f, limits, csv_quotes=True), where)
        reader = csv.reader(lines, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            if header and header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            if len(set(header)) != len(header) or any(not h for h in header):
                raise InvalidDataset("CSV header has empty or repeated column names", line=1)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise InvalidDataset(
                        f"expected {len(header)} columns, got {len(row)}", line=where[0]
                    )
                # CSV has no null: an empty cell is an absent value.
                yield where[0], {k: v for k, v in zip(header, row, strict=True) if v != ""}
        except csv.Error as exc:
            raise InvalidDataset(f"malformed CSV: {exc}", line=where[0]) from None


def _decoded_lines(lines: Iterator[tuple[int, bytes]], where: list[int]) -> Iterator[str]:
    for line_no, raw in lines:
        where[0] = line_no
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidDataset(
                f"invalid UTF-8 at byte {exc.start} of the line", line=line_no
            ) from None


def _parquet_records(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    from cgd.datasets.parquet_rows import parquet_records

    return parquet_records(path, limits)


# --- record → row ------------------------------------------------------------------------------


def _to_row(record: dict[str, Any], line: int, fields: FieldMap, limits: Limits) -> Row:
    assert fields.prompt_field is not None
    prompt_field = fields.prompt_field
    if fields.auto_prompt and prompt_field not in record:
        prompt_field = next((f for f in PROMPT_DEFAULTS if f in record), prompt_field)
    prompt = record.get(prompt_field)
    chat = read_chat(prompt, line, prompt_field) if is_chat(prompt) else None
    if chat is not None:
        prompt = chat.prompt
    elif not isinstance(prompt, str):
        reason = (
            f"missing prompt field {prompt_field!r}"
            if prompt is None
            else f"prompt field {prompt_field!r} must be a string, got {type(prompt).__name__}"
        )
        raise InvalidDataset(reason, line=line, field=prompt_field)
    if not prompt.strip():
        raise InvalidDataset("empty prompt", line=line, field=prompt_field)
    _check_text(prompt, line, prompt_field)
    reference_field = fields.reference_field
    if fields.auto_reference and reference_field is None:  # the first row had none
        reference_field = next((f for f in REFERENCE_DEFAULTS if f in record), None)
    reference = _optional_text(record, reference_field, line)
    if reference is None and chat is not None:
        reference = chat.reference  # a named reference field wins over the final turn
    response = _optional_text(record, fields.response_field, line)
    solution = _optional_text(record, fields.solution_field, line)
    item_id = _item_id(record, fields.id_field, line)
    used = {
        prompt_field,
        reference_field,
        fields.response_field,
        fields.id_field,
        fields.solution_field,
    }
    extra = {k: v for k, v in record.items() if k not in used} or None
    if extra is not None:
        _check_extra(extra, line, limits)
    return Row(line, item_id, prompt, reference, response, extra, solution)


def _check_text(value: str, line: int, name: str | None) -> None:
    if "\x00" in value:  # Postgres text cannot hold NUL
        raise InvalidDataset(f"field {name!r} contains a NUL character", line=line, field=name)


def _optional_text(record: dict[str, Any], name: str | None, line: int) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    if value is None or isinstance(value, str):
        if value is not None:
            _check_text(value, line, name)
        return value
    if isinstance(value, bool | int | float):
        # Numeric references (AMC's 27.0) keep their JSON spelling.
        return orjson.dumps(value).decode()
    raise InvalidDataset(
        f"field {name!r} must be a string or a number, got {type(value).__name__}",
        line=line,
        field=name,
    )


def _item_id(record: dict[str, Any], name: str | None, line: int) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidDataset(
            f"id field {name!r} must be a string or an integer", line=line, field=name
        )
    text = str(value)
    if not text.strip() or len(text) > MAX_ID_CHARS:
        raise InvalidDataset(f"id must be 1 to {MAX_ID_CHARS} characters", line=line, field=name)
    _check_text(text, line, name)
    return text


def _check_extra(extra: dict[str, Any], line: int, limits: Limits) -> None:
    stack: list[tuple[Any, int]] = [(v, 1) for v in extra.values() if isinstance(v, dict | list)]
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_json_depth:
            raise InvalidDataset(f"nesting deeper than {limits.max_json_depth} levels", line=line)
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    for key, value in extra.items():
        if isinstance(value, str):
            _check_text(value, line, key)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise InvalidDataset(f"integer in field {key!r} is out of range", line=line)
