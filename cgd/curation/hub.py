"""A snapshot as a Hugging Face Hub dataset folder, also readable by LLaMA-Factory.

```
DIR/
  README.md                      YAML metadata (license, task categories, configs, sizes) + card
  dataset_info.json              LLaMA-Factory entries: alpaca and sharegpt, per split
  data/train-00000-of-00001.parquet
  data/validation-00000-of-00001.parquet   (when the snapshot has a validation split)
```

The Parquet files hold one training mode (``cgd`` unless asked) in both LLaMA-Factory layouts at
once: ``instruction``/``input``/``output`` (alpaca) and ``conversations`` (sharegpt, its default
``from``/``value`` and ``human``/``gpt`` tags), plus ``triplet_id`` to trace a row back. Each
``dataset_info.json`` entry names the columns it reads; LLaMA-Factory drops the others.
``datasets.load_dataset(DIR)`` reads the README's ``configs`` and loads both splits.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from cgd.curation.card import render_markdown
from cgd.curation.export import _SHAREGPT, _parquet_chunks
from cgd.curation.extra_columns import ExtraColumns, column_names, flat_schema
from cgd.curation.formats import Mode, build_input, check_mode, missing_field, target
from cgd.curation.split import TRAIN, VAL, split_name

HUB_SPLITS = (TRAIN, VAL)
HUB_SCHEMA = pa.schema(
    [
        ("triplet_id", pa.string()),
        ("instruction", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("conversations", _SHAREGPT),
    ]
)
# The README's feature list, in the Hub's YAML form, matching HUB_SCHEMA.
_FEATURES_YAML = """\
  features:
  - name: triplet_id
    dtype: string
  - name: instruction
    dtype: string
  - name: input
    dtype: string
  - name: output
    dtype: string
  - name: conversations
    list:
    - name: from
      dtype: string
    - name: value
      dtype: string
"""
LICENSE_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{0,63}$")


def data_file(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def hub_rows(
    triplets: Iterable[Mapping[str, Any]],
    mode: Mode,
    split: str,
    extra_names: Mapping[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """The split's rows in the Hub layout; triplets the mode cannot use are left out.
    ``extra_names``: extra column -> its column in the Hub layout (``hub_extra_names``)."""
    for t in triplets:
        if split_name(t.get("split")) != split or missing_field(mode, t) is not None:
            continue
        user, answer = build_input(mode, t), target(mode, t)
        row = {
            "triplet_id": t.get("triplet_id"),
            "instruction": user,
            "input": "",
            "output": answer,
            "conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": answer}],
        }
        values = t.get("extra") or {}
        for name, col in (extra_names or {}).items():
            row[col] = values.get(name)
        yield row


def hub_extra_names(extra: ExtraColumns) -> dict[str, str]:
    """The Hub layout is flat: each extra column is a column of its own."""
    return column_names(extra, HUB_SCHEMA.names)


_HUB_DTYPES = {"int64": "int64", "double": "float64", "bool": "bool"}


def _features_yaml(extra: ExtraColumns) -> str:
    names = hub_extra_names(extra)
    lines = [
        f"  - name: {json.dumps(names[n])}\n    dtype: {_HUB_DTYPES.get(k, 'string')}"
        for n, k in extra.items()
    ]
    return _FEATURES_YAML.rstrip("\n") + "".join("\n" + line for line in lines)


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket of ``n`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "10M<n<100M"


def slug(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (name or "cgd_snapshot").lower()).strip("_") or "cgd"


def write_hub_folder(
    triplets: Callable[[], Iterable[Mapping[str, Any]]],
    dest: Path,
    card: Mapping[str, Any],
    mode: str = "cgd",
    license: str = "other",
) -> dict[str, int]:
    """Write the folder; ``triplets()`` is called once per split (a fresh pass each). Returns
    the rows written per split."""
    checked = check_mode(mode)
    extra: ExtraColumns = dict(card.get("extra_columns") or {})
    if not LICENSE_RE.match(license):
        raise ValueError(f"license {license!r}: expected a Hub license id such as mit or other")
    (dest / "data").mkdir(parents=True, exist_ok=True)
    names, schema = hub_extra_names(extra), flat_schema(HUB_SCHEMA, extra)
    rows: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for split in HUB_SPLITS:
        counted = _Counted(hub_rows(triplets(), checked, split, names))
        path = dest / data_file(split)
        with path.open("wb") as out:
            for chunk in _parquet_chunks(counted, schema, 1024, "snappy"):
                out.write(chunk)
        if counted.n == 0 and split != TRAIN:
            path.unlink()  # an empty split would only confuse loaders
            continue
        rows[split], sizes[split] = counted.n, path.stat().st_size
    name = slug(card.get("name"))
    info = dataset_info(name, list(rows))
    (dest / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    readme = readme_yaml(card, rows, sizes, license) + readme_body(card, checked, name, rows)
    (dest / "README.md").write_text(readme, encoding="utf-8")
    return rows


class _Counted:
    def __init__(self, it: Iterator[dict[str, Any]]) -> None:
        self.it, self.n = it, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in self.it:
            self.n += 1
            yield row


def dataset_info(name: str, splits: list[str]) -> dict[str, Any]:
    """LLaMA-Factory ``dataset_info.json`` entries (paths relative to the folder)."""
    out: dict[str, Any] = {}
    for split in splits:
        suffix = "" if split == TRAIN else f"_{split}"
        out[f"{name}_alpaca{suffix}"] = {
            "file_name": data_file(split),
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
        out[f"{name}_sharegpt{suffix}"] = {
            "file_name": data_file(split),
            "formatting": "sharegpt",
            "columns": {"messages": "conversations"},
            "tags": {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
            },
        }
    return out


def readme_yaml(
    card: Mapping[str, Any], rows: Mapping[str, int], sizes: Mapping[str, int], license: str
) -> str:
    total = sum(rows.values())
    q = json.dumps  # a JSON string is a valid YAML scalar: no quoting rules to get wrong
    lines = [
        "---",
        f"license: {license}",
        f"pretty_name: {q(str(card.get('name') or 'CGD snapshot'))}",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- critique-guided-distillation",
        "- synthetic",
        "size_categories:",
        f"- {size_category(total)}",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split in rows:
        lines += [
            f"  - split: {split}",
            f"    path: {data_file(split).replace('00000-of-00001', '*')}",
        ]
    extra: ExtraColumns = dict(card.get("extra_columns") or {})
    lines += ["dataset_info:", _features_yaml(extra), "  splits:"]
    for split, n in rows.items():
        lines += [f"  - name: {split}", f"    num_examples: {n}", f"    num_bytes: {sizes[split]}"]
    lines += [f"  download_size: {sum(sizes.values())}", "---", ""]
    return "\n".join(lines)


def readme_body(card: Mapping[str, Any], mode: Mode, name: str, rows: Mapping[str, int]) -> str:
    split_list = ", ".join(f"{s} {n}" for s, n in rows.items())
    usage = [
        "## Files and loading",
        "",
        f"Mode `{mode}`: the user turn is the mode's input, the assistant turn its target (see"
        f" below). Rows: {split_list}.",
        "",
        "```python",
        "import datasets",
        'ds = datasets.load_dataset("path/to/this/folder")  # train and validation',
        "```",
        "",
        "LLaMA-Factory: `dataset_dir` = this folder, `dataset` = "
        + ", ".join(f"`{k}`" for k in dataset_info(name, list(rows)))
        + " (alpaca and sharegpt views of the same rows).",
        "",
    ]
    return render_markdown(card) + "\n" + "\n".join(usage)


def iter_tar(folder: Path, mtime: int = 0) -> Iterator[bytes]:
    """A tar of ``folder``'s files, streamed a chunk at a time (no file held in memory)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        info = tarfile.TarInfo(path.relative_to(folder).as_posix())
        info.size, info.mtime, info.mode = path.stat().st_size, mtime, 0o644
        yield info.tobuf(tarfile.PAX_FORMAT)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk
        if pad := -info.size % tarfile.BLOCKSIZE:
            yield b"\0" * pad
    yield b"\0" * (2 * tarfile.BLOCKSIZE)  # end of archive
