"""Parquet rows with bounded cost: a value's size is known before it becomes a Python object.

A Parquet file can be tiny and still decode to gigabytes: one long string, dictionary-encoded,
repeated on every row. So every byte-array column is read *as a dictionary* (each distinct
value materialised once), each row's decoded size is computed from Arrow lengths in C, a row
over ``CGD_MAX_LINE_BYTES`` is refused, every row's size counts against
``CGD_MAX_DECOMPRESSED_BYTES``, and rows become Python objects a slice of at most
``_SLICE_BYTES`` at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cgd.datasets.errors import DatasetTooLarge, InvalidDataset

if TYPE_CHECKING:
    import pyarrow as pa

    from cgd.datasets.ingest import Limits

_BATCH_ROWS = 2048
_SLICE_BYTES = 32 * 1024**2


def parquet_records(path: Path, limits: Limits) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidDataset(f"not a valid Parquet file: {exc}", line=None) from None
    _check_declared(meta, limits)
    schema = pf.schema
    byte_arrays = [schema.column(i).physical_type == "BYTE_ARRAY" for i in range(len(schema))]
    # A repeated (list) leaf can point at one long dictionary value many times in one row: those
    # are read as dictionaries, so nothing is expanded before its size is known.
    repeated = [
        schema.column(i).path
        for i in range(len(schema))
        if byte_arrays[i] and schema.column(i).max_repetition_level > 0
    ]
    if repeated:
        pf = pq.ParquetFile(path, read_dictionary=repeated)
    sizer = _Sizer()
    used = 0
    row_no = 0
    try:
        with open(path, "rb") as raw:
            for group in range(meta.num_row_groups):
                rows = _batch_rows(raw, meta.row_group(group), byte_arrays)
                for batch in pf.iter_batches(batch_size=rows, row_groups=[group]):
                    sizes = sizer.row_sizes(batch).to_pylist()
                    for i, size in enumerate(sizes):
                        if size > limits.max_line_bytes:
                            raise InvalidDataset(
                                f"row decodes to {size} bytes, over the limit of "
                                f"{limits.max_line_bytes} (CGD_MAX_LINE_BYTES)",
                                line=row_no + i + 1,
                            )
                    used += sum(sizes)
                    if used > limits.max_decompressed_bytes:
                        raise DatasetTooLarge(
                            "the upload decodes to more than "
                            f"{limits.max_decompressed_bytes} bytes",
                            setting="CGD_MAX_DECOMPRESSED_BYTES",
                            line=row_no + 1,
                        )
                    for start, stop in _slices(sizes):
                        for record in _decoded(batch.slice(start, stop - start)).to_pylist():
                            row_no += 1
                            yield row_no, {k: v for k, v in record.items() if v is not None}
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidDataset(f"corrupt Parquet data: {exc}", line=row_no + 1) from None


def _batch_rows(raw: BinaryIO, group: Any, byte_arrays: list[bool]) -> int:
    """Rows per batch such that a batch decodes to at most ~``_SLICE_BYTES``.

    A dictionary-encoded value can repeat on every row, so a batch may decode to up to
    rows × (the longest dictionary value) per column; that value is no longer than its
    dictionary page, whose size the page header states (and the decompressor enforces).
    Plain-encoded columns decode to their stated uncompressed size, bounded per row group.
    """
    per_row = 0
    for c in range(group.num_columns):
        chunk = group.column(c)
        if byte_arrays[c] and chunk.has_dictionary_page:  # fixed-width values can't grow
            per_row += _dictionary_page_bytes(raw, chunk)
    return max(1, min(_BATCH_ROWS, _SLICE_BYTES // max(1, per_row)))


def _dictionary_page_bytes(raw: BinaryIO, chunk: Any) -> int:
    """The uncompressed size a dictionary page's header declares (Thrift compact protocol:
    field 1 is the page type, field 2 the uncompressed size, both zigzag varints). On anything
    unexpected, the whole chunk's uncompressed size: a safe upper bound."""
    fallback = int(chunk.total_uncompressed_size)
    offset = chunk.dictionary_page_offset
    if offset is None:
        return fallback
    raw.seek(offset)
    head = raw.read(32)
    pos, field = 0, 0
    try:
        while pos < len(head):
            byte = head[pos]
            pos += 1
            delta, kind = byte >> 4, byte & 0x0F
            if kind != 5 or delta == 0:  # not an i32 with a short field header
                return fallback
            field += delta
            value, shift = 0, 0
            while True:
                b = head[pos]
                pos += 1
                value |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            value = (value >> 1) ^ -(value & 1)
            if field == 2:
                return max(0, min(value, fallback))
    except IndexError:
        pass
    return fallback


def _check_declared(meta: Any, limits: Limits) -> None:
    """Bound what the file claims before reading any data."""
    if meta.num_columns > limits.max_parquet_columns:
        raise InvalidDataset(
            f"Parquet file declares {meta.num_columns} columns (limit "
            f"{limits.max_parquet_columns})",
            line=None,
        )
    if meta.num_rows > limits.max_items:
        raise DatasetTooLarge(
            f"Parquet file declares {meta.num_rows} rows, over {limits.max_items}",
            setting="CGD_MAX_DATASET_ITEMS",
        )
    for i in range(meta.num_row_groups):
        size = meta.row_group(i).total_byte_size
        if size > limits.max_parquet_row_group_bytes:
            raise DatasetTooLarge(
                f"Parquet row group {i} declares {size} bytes uncompressed, over "
                f"{limits.max_parquet_row_group_bytes}; write smaller row groups",
                setting="CGD_MAX_PARQUET_ROW_GROUP_BYTES",
            )


def _slices(sizes: list[int]) -> Iterator[tuple[int, int]]:
    start, acc = 0, 0
    for i, size in enumerate(sizes):
        if acc and acc + size > _SLICE_BYTES:
            yield start, i
            start, acc = i, 0
        acc += size
    if start < len(sizes):
        yield start, len(sizes)


def _decoded(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The slice with its dictionary columns decoded (only the slice's values are copied; a
    batch's dictionary holds the whole row group's distinct values)."""
    import pyarrow as pa

    columns = [
        c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


class _Sizer:
    """Decoded sizes per row. A row group's dictionary comes with every batch read from it:
    its value lengths are computed once per dictionary, not once per batch."""

    def __init__(self) -> None:
        self._dict_sizes: dict[tuple[int, int, int], pa.Array] = {}

    def row_sizes(self, batch: pa.RecordBatch) -> pa.Array:
        import pyarrow as pa
        import pyarrow.compute as pc

        total = pa.array([0] * batch.num_rows, pa.int64())
        for column in batch.columns:
            total = pc.add(total, self.value_sizes(column))
        return total

    def value_sizes(self, arr: pa.Array) -> pa.Array:
        """Bytes each element of ``arr`` becomes once decoded (int64, 0 for null). Nested
        values are the sum of their leaves; dictionaries are looked up, not expanded."""
        import pyarrow as pa
        import pyarrow.compute as pc

        t = arr.type
        if pa.types.is_dictionary(t):
            out = pc.take(self._dictionary_sizes(arr.dictionary), arr.indices)
        elif (
            pa.types.is_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_string(t)
            or pa.types.is_large_binary(t)
        ):
            out = pc.binary_length(arr).cast(pa.int64())
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
            child = self.value_sizes(arr.values)
            cums = pa.concat_arrays(
                [pa.array([0], pa.int64()), pc.cumulative_sum(child).cast(pa.int64())]
            )
            offsets = arr.offsets
            out = pc.subtract(pc.take(cums, offsets[1:]), pc.take(cums, offsets[:-1]))
        elif pa.types.is_struct(t):
            out = pa.array([0] * len(arr), pa.int64())
            for child in arr.flatten():
                out = pc.add(out, self.value_sizes(child))
        elif getattr(t, "bit_width", 0) > 0:
            out = pa.array([max(1, t.bit_width // 8)] * len(arr), pa.int64())
        elif pa.types.is_null(t):
            out = pa.array([0] * len(arr), pa.int64())
        else:
            raise InvalidDataset(f"Parquet column type {t} is not supported", line=None)
        return pc.fill_null(out, 0)

    def _dictionary_sizes(self, dictionary: pa.Array) -> pa.Array:
        buffers = dictionary.buffers()
        key = (buffers[-1].address if buffers[-1] else 0, dictionary.offset, len(dictionary))
        cached = self._dict_sizes.get(key)
        if cached is None:
            if len(self._dict_sizes) > 64:
                self._dict_sizes.clear()
            cached = self._dict_sizes[key] = self.value_sizes(dictionary)
        return cached
