"""Hub-ready export folders: `datasets.load_dataset(DIR)` loads both splits, the README carries
YAML metadata and quality numbers, and every `dataset_info.json` entry is one LLaMA-Factory can
read (checked with LLaMA-Factory's own loader when it is installed, else against its documented
format: file, formatting, columns, sharegpt tags)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from cgd.curation.card import build_card
from cgd.curation.hub import iter_tar, size_category, write_hub_folder
from cgd.curation.snapshot import curate
from cgd.curation.synthetic import make_triplet

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUALITY = {
    "initial_accuracy": 0.25,
    "refined_accuracy": 0.75,
    "fix_rate": 0.6667,
    "break_rate": 0.0,
    "verdict_agreement": 0.5,
    "wrong_verdict_precision": 0.5,
    "wrong_verdict_recall": 1.0,
    "truncation_rate": 0.0,
    "counts": {"fixed": 6, "initially_wrong_judged": 9, "verified": 12},
    "tokens_by_stage": None,
}


def _triplets() -> list[dict[str, Any]]:
    rows = [make_triplet(i, split="validation" if i % 4 == 0 else "train") for i in range(12)]
    rows[1]["prompt"] = 'A <script>alert("x")</script> {brace} and $\\frac{1}{2}$'
    rows[5]["initial_response"] = None  # cgd cannot use it: left out
    return rows


def _card(rows: list[dict[str, Any]]) -> dict[str, Any]:
    res = curate(rows, {"name": "gsm8k cgd v1"})
    return build_card(
        name="gsm8k cgd v1",
        spec={},
        stats={**res.stats, "quality": QUALITY},
        content_hash=res.content_hash,
        lineage=res.lineage,
    )


def front_matter(readme: str) -> dict[str, Any]:
    assert readme.startswith("---\n")
    meta = yaml.safe_load(readme.split("---\n", 2)[1])
    assert isinstance(meta, dict)
    return meta


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    rows = _triplets()
    dest = tmp_path / "hub"
    counts = write_hub_folder(lambda: iter(rows), dest, _card(rows), "cgd", "mit")
    assert counts == {"train": 8, "validation": 3}
    return dest


def test_load_dataset_loads_both_splits(hub_dir: Path, tmp_path: Path) -> None:
    import datasets

    ds = datasets.load_dataset(str(hub_dir), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation"}
    assert (ds["train"].num_rows, ds["validation"].num_rows) == (8, 3)
    row = ds["validation"][0]
    assert row["triplet_id"] == "trip-000000-0"
    assert row["conversations"][0]["from"] == "human"
    assert row["conversations"][1] == {"from": "gpt", "value": row["output"]}
    assert row["instruction"] == row["conversations"][0]["value"] and row["input"] == ""
    texts = [r["instruction"] for r in ds["train"]]
    assert any('<script>alert("x")</script> {brace}' in t for t in texts)  # verbatim


def test_readme_yaml_metadata_and_quality(hub_dir: Path) -> None:
    readme = (hub_dir / "README.md").read_text()
    meta = front_matter(readme)
    assert meta["license"] == "mit"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["pretty_name"] == "gsm8k cgd v1"
    (config,) = meta["configs"]
    assert config["config_name"] == "default"
    assert config["data_files"] == [
        {"split": "train", "path": "data/train-*.parquet"},
        {"split": "validation", "path": "data/validation-*.parquet"},
    ]
    splits = {s["name"]: s for s in meta["dataset_info"]["splits"]}
    assert splits["train"]["num_examples"] == 8 and splits["validation"]["num_examples"] == 3
    size = (hub_dir / "data/train-00000-of-00001.parquet").stat().st_size
    assert splits["train"]["num_bytes"] == size
    # Quality numbers, with the counts behind them, in the body.
    assert "## Quality" in readme
    assert "| fix rate (wrong -> right) | 66.7% | 6/9 |" in readme
    assert "gsm8k_cgd_v1_sharegpt" in readme


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_dataset_info_entries_follow_llamafactory_format(hub_dir: Path, tmp_path: Path) -> None:
    """Each entry against LLaMA-Factory's documented dataset_info format (data/README.md of
    LLaMA-Factory): a ``file_name`` relative to the folder, ``formatting`` alpaca or sharegpt,
    ``columns`` naming existing columns (alpaca: prompt/query/response; sharegpt: messages),
    sharegpt ``tags`` matching the rows; loaded with `datasets` as LLaMA-Factory does."""
    import datasets

    info = json.loads((hub_dir / "dataset_info.json").read_text())
    assert set(info) == {
        "gsm8k_cgd_v1_alpaca",
        "gsm8k_cgd_v1_sharegpt",
        "gsm8k_cgd_v1_alpaca_validation",
        "gsm8k_cgd_v1_sharegpt_validation",
    }
    for name, entry in info.items():
        path = hub_dir / entry["file_name"]
        assert path.is_file(), name
        columns = set(pq.read_schema(path).names)
        assert set(entry["columns"].values()) <= columns, name
        rows = datasets.load_dataset(
            "parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "c")
        ).to_list()
        assert len(rows) == (3 if name.endswith("_validation") else 8)
        if entry["formatting"] == "alpaca":
            assert set(entry["columns"]) <= {"prompt", "query", "response", "system", "history"}
            c = entry["columns"]
            assert all(r[c["prompt"]] and r[c["response"]] for r in rows)
        else:
            assert entry["formatting"] == "sharegpt"
            tags, msgs = entry["tags"], entry["columns"]["messages"]
            for r in rows:
                turns = r[msgs]
                assert [t[tags["role_tag"]] for t in turns] == [
                    tags["user_tag"],
                    tags["assistant_tag"],
                ]
                assert all(t[tags["content_tag"]] for t in turns)


# LLaMA-Factory pins older datasets/transformers than this project, so it cannot be installed
# beside it: `make test` downloads its wheel alone (scripts/tools.sh) and the check imports its
# loader from the wheel in a subprocess. Only `torchaudio` (multimodal plugins, not on the text
# loading path) is missing there; it is stubbed.
LLAMAFACTORY_WHEELS = Path(__file__).resolve().parents[1] / ".venv" / "wheels"
_LLAMAFACTORY_CHECK = """
import json, sys, types, importlib.machinery
from types import SimpleNamespace as NS
sys.path.insert(0, sys.argv[1])
stub = types.ModuleType("torchaudio")
stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
sys.modules.setdefault("torchaudio", stub)
from llamafactory.data import loader, parser
hub = sys.argv[2]
info = json.load(open(hub + "/dataset_info.json"))
data_args = NS(dataset_dir=hub, media_dir=hub, streaming=False, max_samples=None,
               preprocessing_num_workers=None, overwrite_cache=True)
model_args = NS(cache_dir=None, hf_hub_token=None)
training_args = NS(local_process_index=0, dataloader_num_workers=0)
out = []
for attr in parser.get_dataset_list(list(info), hub):
    ds = loader._load_single_dataset(attr, model_args, data_args, training_args)
    ex = ds[0]
    assert ex["_prompt"][0]["role"] == "user" and ex["_prompt"][0]["content"], ex
    assert ex["_response"][0]["role"] == "assistant" and ex["_response"][0]["content"], ex
    out.append([attr.dataset_name, len(ds)])
print(json.dumps(out))
"""


def test_llamafactory_loader_reads_each_entry(hub_dir: Path, tmp_path: Path) -> None:
    """LLaMA-Factory's own loader (load + align to its chat format) reads every entry."""
    import subprocess
    import sys

    wheels = sorted(LLAMAFACTORY_WHEELS.glob("llamafactory-*.whl"))
    assert wheels, f"no LLaMA-Factory wheel in {LLAMAFACTORY_WHEELS}: run scripts/tools.sh"
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _LLAMAFACTORY_CHECK, str(wheels[-1]), str(hub_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sizes = json.loads(out.stdout.strip().splitlines()[-1])  # [file, rows] per entry
    info = json.loads((hub_dir / "dataset_info.json").read_text())
    assert len(sizes) == len(info) == 4
    for name, n in sizes:
        assert n == (3 if "validation" in name else 8), sizes


def test_no_validation_split_means_no_validation_file(tmp_path: Path) -> None:
    import datasets

    rows = [make_triplet(i) for i in range(4)]
    counts = write_hub_folder(lambda: iter(rows), tmp_path / "h", _card(rows))
    assert counts == {"train": 4}
    assert not (tmp_path / "h/data/validation-00000-of-00001.parquet").exists()
    ds = datasets.load_dataset(str(tmp_path / "h"), cache_dir=str(tmp_path / "c"))
    assert set(ds) == {"train"}
    assert "validation" not in json.dumps(
        json.loads((tmp_path / "h/dataset_info.json").read_text())
    )


def test_bad_license_and_mode_are_refused(tmp_path: Path) -> None:
    rows = [make_triplet(0)]
    with pytest.raises(ValueError, match="license"):
        write_hub_folder(lambda: iter(rows), tmp_path / "a", _card(rows), "cgd", "MIT License")
    with pytest.raises(ValueError, match="mode"):
        write_hub_folder(lambda: iter(rows), tmp_path / "b", _card(rows), "dpo")


def test_tar_stream_is_a_valid_archive(hub_dir: Path) -> None:
    data = b"".join(iter_tar(hub_dir))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = sorted(tar.getnames())
        assert names == sorted(
            p.relative_to(hub_dir).as_posix() for p in hub_dir.rglob("*") if p.is_file()
        )
        readme = tar.extractfile("README.md")
        assert readme is not None
        assert readme.read() == (hub_dir / "README.md").read_bytes()
