"""Streamed uploads and downloads, for both clients: a dataset file goes out in chunks (never
read into memory whole), an export comes down through ``<name>.part`` and is renamed only when
complete, so a broken download never leaves a truncated file under the name."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypedDict, cast
from urllib.parse import unquote

import httpx

from cgd.client.base import AsyncBaseClient, BaseClient, query
from cgd.client.base import idempotency_key as new_key
from cgd.client.errors import CgdConnectionError

__all__ = ["ExportResult", "ProgressCallback", "download", "download_async", "upload_request"]

# (bytes done, total bytes or None when the server does not say)
ProgressCallback = Callable[[int, int | None], None]


class ExportResult(TypedDict):
    path: str
    bytes: int
    content_hash: str | None
    filename: str | None


class _ProgressFile(io.RawIOBase):
    """Wraps an open binary file so httpx streams it in chunks and we see how far it got.
    httpx seeks to 0 before every attempt, which resets the count for a retried upload."""

    def __init__(self, raw: IO[bytes], total: int, progress: ProgressCallback | None) -> None:
        super().__init__()
        self._raw = raw
        self._total = total
        self._progress = progress
        self.name = getattr(raw, "name", "upload")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:  # lets httpx size the part with fstat (Content-Length)
        return self._raw.fileno()

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._raw.read(-1 if size is None else size)
        if self._progress is not None and chunk:
            self._progress(self._raw.tell(), self._total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = self._raw.seek(offset, whence)
        if self._progress is not None and pos == 0:
            self._progress(0, self._total)
        return pos

    def tell(self) -> int:
        return self._raw.tell()


@contextlib.contextmanager
def upload_request(
    file: str | os.PathLike[str] | IO[bytes],
    fields: dict[str, Any],
    *,
    idempotency_key: str | None,
    filename: str | None,
    progress: ProgressCallback | None,
) -> Iterator[dict[str, Any]]:
    """The keyword arguments of a ``POST /v1/datasets`` (multipart, streamed from ``file``, a
    path or a seekable binary file), open for as long as the block runs. A fresh
    ``Idempotency-Key`` is sent unless one is given, which makes retrying it safe."""
    with contextlib.ExitStack() as stack:
        if isinstance(file, str | os.PathLike):
            fh: IO[bytes] = stack.enter_context(open(file, "rb"))
        else:
            fh = file
        total = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        upload_name = filename or Path(str(getattr(fh, "name", "upload.jsonl"))).name
        wrapped = cast(IO[bytes], _ProgressFile(fh, total, progress))
        yield {
            "files": {"file": (upload_name, wrapped, "application/octet-stream")},
            "data": query(**fields),
            "headers": {"Idempotency-Key": new_key(idempotency_key)},
        }


def _result(response: httpx.Response, dest: Path, done: int) -> ExportResult:
    filename = None
    disposition = response.headers.get("content-disposition", "")
    if "filename*=UTF-8''" in disposition:  # RFC 6266: the exact name, percent-encoded
        filename = unquote(disposition.split("filename*=UTF-8''", 1)[1].split(";", 1)[0])
    elif 'filename="' in disposition:
        filename = disposition.split('filename="', 1)[1].split('"', 1)[0]
    return ExportResult(
        path=str(dest),
        bytes=done,
        content_hash=response.headers.get("x-content-hash") or None,
        filename=filename,
    )


def _total(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


class _Part:
    """The ``<name>.part`` file an export is written into, with the count and the progress."""

    def __init__(self, out: IO[bytes], total: int | None, progress: ProgressCallback | None):
        self._out, self._total, self._progress = out, total, progress
        self.done = 0
        if progress is not None:
            progress(0, total)

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)
        self.done += len(chunk)
        if self._progress is not None:
            self._progress(self.done, self._total)


@contextlib.contextmanager
def _writing(
    api_url: str, response: httpx.Response, dest: Path, progress: ProgressCallback | None
) -> Iterator[_Part]:
    """Renames the part file to ``dest`` when the block completes; removes it otherwise (a
    transport error as :class:`CgdConnectionError`)."""
    part = dest.with_name(dest.name + ".part")
    try:
        with open(part, "wb") as out:
            yield _Part(out, _total(response), progress)
        part.replace(dest)
    except httpx.TransportError as exc:
        part.unlink(missing_ok=True)
        raise CgdConnectionError(api_url, exc) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def download(
    client: BaseClient,
    url: str,
    q: dict[str, Any],
    dest: Path,
    progress: ProgressCallback | None,
    chunk_size: int = 1 << 20,
) -> ExportResult:
    response = client._send("GET", url, params=q, stream=True, timeout=client.transfer)
    try:
        with _writing(client.api_url, response, dest, progress) as part:
            for chunk in response.iter_bytes(chunk_size):
                part.write(chunk)
    finally:
        response.close()
    return _result(response, dest, part.done)


async def download_async(
    client: AsyncBaseClient,
    url: str,
    q: dict[str, Any],
    dest: Path,
    progress: ProgressCallback | None,
    chunk_size: int = 1 << 20,
) -> ExportResult:
    response = await client._send("GET", url, params=q, stream=True, timeout=client.transfer)
    try:
        with _writing(client.api_url, response, dest, progress) as part:
            async for chunk in response.aiter_bytes(chunk_size):
                part.write(chunk)
    finally:
        await response.aclose()
    return _result(response, dest, part.done)


def hub_dir(dest_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(the folder, the tar to download into it); the folder must be absent or empty."""
    dest = Path(dest_dir)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    return dest, dest / ".cgd-hub.tar"


def unpack_hub(tar_path: Path, dest: Path, res: ExportResult) -> ExportResult:
    """Unpacks a downloaded Hub tar into ``dest``; ``path`` in the result is the folder."""
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(dest, filter="data")  # no absolute paths, links or ../ escapes
    finally:
        tar_path.unlink(missing_ok=True)
    return ExportResult({**res, "path": str(dest)})
