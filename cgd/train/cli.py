"""Command line for the trainer: ``train``, ``inspect``, ``eval``, ``tiny-model``.

Mounted into the main CLI as ``cgd train …``; meanwhile ``python -m cgd.train.cli …``. Multi-GPU:
``torchrun --nproc_per_node 8 -m cgd.train.cli train …``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from cgd.train.config import field_help, load_config, parse_override

app = typer.Typer(help="Train and evaluate CGD students.", no_args_is_help=True)
console = Console()


def _setup_logging() -> None:
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if rank == "0" else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
    )


@app.command()
def train(
    train_file: Annotated[str, typer.Argument(help="Export JSONL (messages or native layout).")],
    model: Annotated[str | None, typer.Option(help=field_help()["model_path"])] = None,
    config: Annotated[Path | None, typer.Option(help="YAML/JSON config file.")] = None,
    mode: Annotated[str | None, typer.Option(help=field_help()["mode"])] = None,
    method: Annotated[str | None, typer.Option(help=field_help()["method"])] = None,
    output_dir: Annotated[str | None, typer.Option(help=field_help()["output_dir"])] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--lr", help=field_help()["learning_rate"])
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help=field_help()["max_steps"])] = None,
    resume_from: Annotated[str | None, typer.Option(help=field_help()["resume_from"])] = None,
    eval_sets: Annotated[
        str | None, typer.Option(help="Comma-separated eval sets or files.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any config field: --set key=value (repeatable)."),
    ] = None,
) -> None:
    """Fine-tune a student on an export file."""
    from cgd.train.loop import run_training

    _setup_logging()
    flags = {
        "train_file": train_file,
        "model_path": model,
        "mode": mode,
        "method": method,
        "output_dir": output_dir,
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "resume_from": resume_from,
        "eval_sets": eval_sets.split(",") if eval_sets else None,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides |= dict(parse_override(s) for s in set_ or [])
    result = run_training(load_config(config, **overrides))
    if os.environ.get("RANK", "0") == "0":
        console.print_json(json.dumps(result))


@app.command()
def inspect(
    train_file: Annotated[str, typer.Argument(help="Export JSONL.")],
    model: Annotated[str, typer.Option(help="Model (tokenizer) directory.")],
    index: Annotated[int, typer.Option(help="Row of the export to show.")] = 0,
    mode: Annotated[str, typer.Option(help=field_help()["mode"])] = "cgd",
    max_length: Annotated[int, typer.Option(help=field_help()["max_length"])] = 4096,
    ids: Annotated[bool, typer.Option(help="Also list every token id with its label.")] = False,
) -> None:
    """Show one training sample: masked prompt tokens dim, supervised tokens green."""
    import itertools

    from cgd.curation.formats import check_mode
    from cgd.train.data import IGNORE_INDEX, SampleBuilder, read_jsonl
    from cgd.train.model import load_tokenizer

    tokenizer = load_tokenizer(model)
    builder = SampleBuilder(tokenizer, max_length, mode=check_mode(mode))
    row = next(itertools.islice(read_jsonl(train_file), index, None))
    sample = builder.build(row)
    if sample is None:
        console.print(f"[red]row {index} is dropped:[/red] {builder.stats.as_dict()}")
        raise typer.Exit(1)
    labels = sample.labels().tolist()
    text = Text()
    for token, label in zip(sample.input_ids.tolist(), labels, strict=True):
        piece = tokenizer.decode([token])
        text.append(piece, style="dim" if label == IGNORE_INDEX else "bold green")
    console.print(text)
    n_sup = sum(label != IGNORE_INDEX for label in labels)
    console.rule()
    console.print(
        f"{len(labels)} tokens: {len(labels) - n_sup} masked (dim), {n_sup} supervised (green)"
        f"{', context truncated' if sample.truncated else ''}"
    )
    if ids:
        for i, (token, label) in enumerate(zip(sample.input_ids.tolist(), labels, strict=True)):
            console.print(
                f"{i:5d} {token:7d} {label:7d} {tokenizer.decode([token])!r}", highlight=False
            )


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Argument(help="Model directory (e.g. a run's final/).")],
    sets: Annotated[
        str, typer.Option(help="Comma-separated: math500, amc23, aime24 or JSONL files.")
    ] = ("math500,amc23,aime24"),
    out_dir: Annotated[str, typer.Option(help="Per-sample logs go here.")] = "runs/eval",
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget per problem.")] = 8192,
    batch_size: Annotated[int, typer.Option(help="Prompts per batch (transformers).")] = 32,
    limit: Annotated[int | None, typer.Option(help="First N problems per set.")] = None,
    backend: Annotated[str, typer.Option(help="auto | hf | vllm")] = "auto",
) -> None:
    """Greedy math evaluation (boxed answers, symbolic/numeric grading)."""
    from cgd.train.evaluate import evaluate_path

    _setup_logging()
    accuracy = evaluate_path(
        model,
        sets.split(","),
        out_dir=out_dir,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        limit=limit,
        backend=backend,
    )
    console.print_json(json.dumps(accuracy))


@app.command("tiny-model")
def tiny_model(
    path: Annotated[Path, typer.Argument(help="Directory to write the model to.")],
    arch: Annotated[str, typer.Option(help="qwen2 | llama")] = "qwen2",
    chat_template: Annotated[
        bool, typer.Option(help="Give the tokenizer a ChatML template.")
    ] = True,
    synthetic_export: Annotated[
        Path | None, typer.Option(help="Also write a small synthetic native export here.")
    ] = None,
) -> None:
    """Write a tiny random-init causal LM + tokenizer (tests, dev runs; no download)."""
    from cgd.train.tiny import make_tiny_model, write_synthetic_export

    make_tiny_model(path, arch=arch, chat_template=chat_template)  # type: ignore[arg-type]
    console.print(f"tiny model written to {path}")
    # The API trains registered base models only (docs/security.md).
    console.print(
        f"for training runs, register it: CGD_BASE_MODELS=tiny={path.resolve()}", soft_wrap=True
    )
    if synthetic_export is not None:
        write_synthetic_export(synthetic_export, 64)
        console.print(f"synthetic export written to {synthetic_export}")


if __name__ == "__main__":
    app()
