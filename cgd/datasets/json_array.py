"""A ``.json`` upload: one JSON array of objects, read element by element.

The array is never held whole: the file is decoded in 1 MiB blocks and each element is parsed
as soon as it is complete, so memory stays bounded by the largest element, which is held to
the same limit as a JSONL line (``CGD_MAX_LINE_BYTES``). Every decoded byte counts against the
decompression budget. Elements are yielded with their 1-based position (the item's ``line``) and
errors carry that position; ``iter_rows`` reports it as the 0-based array ``index``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgd.datasets.errors import InvalidDataset

if TYPE_CHECKING:
    from cgd.datasets.ingest import Limits

_READ_BYTES = 1024 * 1024
_SPACE = " \t\r\n"


def _no_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's json would accept them, orjson (JSONL) does not.
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class _Text:
    """The file's text in a growing window: ``buf[pos:]`` is what is not consumed yet."""

    def __init__(self, f: Any, limits: Limits) -> None:
        from cgd.datasets.ingest import _Budget

        self.f = f
        self.budget = _Budget(limits.max_decompressed_bytes)
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        """Read the next block; False at the end of the file."""
        if self.eof:
            return False
        block = self.f.read(_READ_BYTES)
        offset = self.budget.used
        self.budget.spend(len(block))
        try:
            text = self.decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            # Blocks are decoded ahead of parsing: the byte offset, not an element, is known.
            raise InvalidDataset(
                f"invalid UTF-8 at byte {offset + exc.start} of the file: {exc.reason}", line=None
            ) from None
        self.buf = self.buf[self.pos :] + text
        self.pos = 0
        self.eof = not block
        return True

    def next_char(self) -> str:
        """The next non-space character (not consumed); "" at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""


def json_array_records(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as f:
        text = _Text(f, limits)
        if text.next_char() != "[":
            raise InvalidDataset("a .json dataset must be one JSON array of objects", line=None)
        text.pos += 1
        at = 1  # the 1-based position of the element being read
        if text.next_char() == "]":
            text.pos += 1
        else:
            while True:
                yield at, _element(text, at, limits)
                c = text.next_char()
                text.pos += 1
                if c == "]":
                    break
                if c != ",":
                    found = repr(c) if c else "the end of the file"
                    raise InvalidDataset(f"expected ',' or ']' after the element, got {found}",
                                         line=at)  # fmt: skip
                at += 1
        if text.next_char():
            raise InvalidDataset("text after the closing ']' of the array", line=None)


def _element(text: _Text, at: int, limits: Limits) -> dict[str, Any]:
    if not text.next_char():
        raise InvalidDataset("the array is not closed (no ']')", line=at)
    while True:
        try:
            value, end = _DECODER.raw_decode(text.buf, text.pos)
        except RecursionError:
            raise InvalidDataset(
                f"nesting deeper than {limits.max_json_depth} levels", line=at
            ) from None
        except ValueError as exc:
            # Maybe only cut by the block boundary: read on, up to the element size limit.
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            if len(text.buf) - text.pos > limits.max_line_bytes:
                raise InvalidDataset(
                    f"malformed JSON ({msg}) or an element longer than the limit of "
                    f"{limits.max_line_bytes} bytes",
                    line=at,
                ) from None
            if text.more():
                continue
            raise InvalidDataset(f"malformed JSON: {msg}", line=at) from None
        if end - text.pos > limits.max_line_bytes:
            raise InvalidDataset(
                f"element is longer than the limit of {limits.max_line_bytes} bytes", line=at
            )
        text.pos = end
        if not isinstance(value, dict):
            raise InvalidDataset(
                f"each element must be a JSON object, got {type(value).__name__}", line=at
            )
        return value
