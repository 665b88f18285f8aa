"""Streams a multipart upload to a spool file while counting and hashing it.

Starlette's own form parsing spools the whole body before the handler runs, so size limits would
only be checked afterwards. Here the limit is enforced chunk by chunk and the file part goes
straight to disk: memory stays bounded and an oversized upload is cut off early. The file is
parsed only once the whole body is in, because the field-mapping form fields may arrive after it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from cgd.datasets.schemas import Upload
from cgd.errors import InvalidRequest, PayloadTooLarge
from services.api.startup import spool_prefix

MAX_FIELD_BYTES = 64 * 1024
_SLACK_BYTES = 1024 * 1024  # multipart framing and small fields on top of the file itself


@dataclass
class SpooledForm:
    fields: dict[str, str] = field(default_factory=dict)
    upload: Upload | None = None

    def cleanup(self) -> None:
        if self.upload is not None:
            self.upload.path.unlink(missing_ok=True)


class _Collector:
    def __init__(self, max_file_bytes: int, tmp_dir: Path | None) -> None:
        self.max_file_bytes = max_file_bytes
        self.tmp_dir = tmp_dir
        self.form = SpooledForm()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._filename: str | None = None
        self._value = bytearray()
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._size = 0
        self._sha = hashlib.sha256()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self._headers.clear()
        self._value.clear()
        self._name = self._filename = None

    def header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        filename = params.get(b"filename")
        if filename is not None:
            if self._file is not None or self.form.upload is not None:
                raise InvalidRequest({"field": "file", "reason": "only one file per upload"})
            self._filename = os.path.basename(filename.decode("utf-8", "replace"))
            fd, path = tempfile.mkstemp(prefix=spool_prefix(), dir=self.tmp_dir)
            self._path = Path(path)
            self._file = os.fdopen(fd, "wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None:
            self._size += len(chunk)
            if self._size > self.max_file_bytes:
                raise PayloadTooLarge(
                    {
                        "reason": f"file is larger than the limit of {self.max_file_bytes} bytes "
                        "(CGD_MAX_UPLOAD_BYTES)",
                        "setting": "CGD_MAX_UPLOAD_BYTES",
                    }
                )
            self._sha.update(chunk)
            self._file.write(chunk)
        else:
            self._value.extend(chunk)
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidRequest({"field": self._name, "reason": "form field too large"})

    def part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            assert self._path is not None
            self.form.upload = Upload(self._path, self._filename, self._size, self._sha.hexdigest())
        elif self._name:
            self.form.fields[self._name] = self._value.decode("utf-8", "replace")

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


async def spool_multipart(
    request: Request, max_file_bytes: int, tmp_dir: Path | None = None
) -> SpooledForm:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(
            {"field": "body", "reason": "expected multipart/form-data with a 'file' part"}
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_file_bytes + _SLACK_BYTES:
        raise PayloadTooLarge(
            {
                "reason": f"body of {declared} bytes is over the limit of {max_file_bytes} bytes "
                "(CGD_MAX_UPLOAD_BYTES)",
                "setting": "CGD_MAX_UPLOAD_BYTES",
            }
        )
    collector = _Collector(max_file_bytes, tmp_dir)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except (PayloadTooLarge, InvalidRequest):
        collector.abort()
        raise
    except Exception as exc:
        collector.abort()
        raise InvalidRequest(
            {"field": "body", "reason": f"malformed multipart body: {exc}"}
        ) from None
    return collector.form
