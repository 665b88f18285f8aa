"""Training throughput: our packed trainer vs a stock padded loop, measured in the same run.

Random-init Qwen2.5-shaped models built from a config (no download), CGD-like samples (450–2,100
tokens, 25–45% of them target), fp32 master weights + bf16 autocast + fused AdamW on GPU.

* ours: ``cgd.train`` itself: packed rows of ``--max-length`` tokens with documents kept apart by
  varlen attention over ``cu_seqlens`` (``--attn varlen``), ``--micro-batch-rows`` rows per
  forward, rows padded to the row length (fixed shapes), optional ``--compile`` of every block,
  loss on target tokens only with chunked lm_head/cross-entropy, ``train_step`` from the loop,
  batches built by the trainer's prefetching loader;
* stock: plain transformers forward/backward on right-padded batches of ``--stock-batch``
  samples, ``labels`` with -100 on prompt and padding (full logits), gradient accumulation.

Both take optimizer steps of about ``--tokens-per-step`` real tokens. A step is timed whole:
building its batches (waiting on the prefetcher for ours, collating inline for stock), the
forward/backward passes, the optimizer and reading the loss. Each loop runs under its own guard,
so a failure (out of memory, a missing kernel) is printed in its row and the other loops' figures
are kept; the script then exits 1, so a run with a failed loop never passes as a check. Each row
is printed (and flushed) as soon as it is measured, and ``--json-dir`` gets one JSON file per
shape with every figure, the attention kernel that ran and the compiled graphs. Reported: real
(non-pad)
tokens/s from the median step time, MFU and peak memory. Model FLOPs per real token =
6·N + 12·L·d·c, N = matmul parameters (lm_head included), c = mean causal context of a token
within its own sample; the same formula for both loops, so MFU ratios equal throughput ratios.

    .venv/bin/python bench/train_throughput.py --shape 0.5b --device cuda --steps 10
    .venv/bin/python bench/train_throughput.py --shape tiny --device cpu --steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, Qwen2Config  # noqa: E402

from cgd.train import attention  # noqa: E402
from cgd.train.data import IGNORE_INDEX, Prefetcher, Sample, StepLoader  # noqa: E402
from cgd.train.loop import finish_metrics, train_step  # noqa: E402
from cgd.train.model import SupervisedLoss, uses_cu_seqlens  # noqa: E402
from cgd.train.parallel import compile_blocks  # noqa: E402
from cgd.train.runtime import Runtime  # noqa: E402

# Qwen2.5-0.5B / 1.5B shapes (their config.json), and a tiny one for CPU smoke runs.
SHAPES: dict[str, dict] = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, vocab_size=151936),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, vocab_size=151936),
    "tiny": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1024),
}  # fmt: skip
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0}


def build_model(shape: str, attn: str, device: torch.device) -> torch.nn.Module:
    config = Qwen2Config(
        **SHAPES[shape],
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    attn = attention.register() if attn == "varlen" else attn
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)
    return model.to(device).train()


def random_samples(n: int, vocab: int, min_len: int, max_len: int, seed: int) -> list[Sample]:
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (), generator=g))
        target_fraction = 0.25 + 0.2 * float(torch.rand((), generator=g))
        ids = torch.randint(0, vocab, (length,), generator=g, dtype=torch.int32)
        samples.append(Sample(ids, n_prompt=length - max(1, int(length * target_fraction))))
    return samples


def flops_per_token(model: torch.nn.Module, samples: list[Sample]) -> float:
    cfg = model.config
    # Tied embeddings: the parameter list holds vocab × d once; the input lookup is no matmul,
    # the lm_head is one, so the matmul parameter count is just the parameter count.
    n_matmul = sum(p.numel() for p in model.parameters())
    lengths = [len(s) for s in samples]
    mean_context = sum(n * (n + 1) / 2 for n in lengths) / sum(lengths)
    return 6 * n_matmul + 12 * cfg.num_hidden_layers * cfg.hidden_size * mean_context


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(args: argparse.Namespace, samples: list[Sample], runtime: Runtime) -> dict:
    model = build_model(args.shape, args.attn, runtime.device)
    module = SupervisedLoss(model, chunk_tokens=4096)
    if getattr(args, "compile", False):
        compile_blocks(model)
    params = [p for p in model.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-6, fused=runtime.device.type == "cuda")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    rows = max(1, args.tokens_per_step // args.max_length)
    loader = StepLoader(
        samples,
        rows_per_step=math.ceil(rows / args.micro_batch_rows) * args.micro_batch_rows,
        micro_batch_rows=args.micro_batch_rows,
        max_length=args.max_length,
        packing=True,
        pack_window=1024,
        seed=0,
        pad_id=0,
        fixed_shapes=True,
    )
    prefetch = Prefetcher(loader, 0, pin=runtime.device.type == "cuda")
    varlen = uses_cu_seqlens(model)
    times, tokens = [], []
    try:
        for step in range(args.warmup_steps + args.steps):
            sync(runtime.device)
            t0 = time.perf_counter()
            _, batches = prefetch.next()
            metrics = train_step(
                module,
                batches,
                optimizer=optimizer,
                scheduler=scheduler,
                params=params,
                grad_clip=1.0,
                runtime=runtime,
                counts=loader.step_counts(step),
                varlen=varlen,
            )
            finish_metrics(metrics, runtime)  # reads the loss: the step is done
            if step >= args.warmup_steps:
                times.append(time.perf_counter() - t0)
                tokens.append(metrics["tokens"])
    finally:
        prefetch.close()
    return {"model": model, "times": times, "tokens": tokens}


def stock_batches(samples: list[Sample], batch: int, tokens_per_step: int, step: int, pad_id: int):
    """Consecutive samples, right-padded batches of ``batch``, ≈ tokens_per_step real tokens."""
    per_step = max(batch, round(tokens_per_step / (sum(len(s) for s in samples) / len(samples))))
    start = (step * per_step) % len(samples)
    chosen = [samples[(start + i) % len(samples)] for i in range(per_step)]
    out = []
    for j in range(0, len(chosen), batch):
        group = chosen[j : j + batch]
        width = max(len(s) for s in group)
        ids = torch.full((len(group), width), pad_id)  # (b, t)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        labels = torch.full((len(group), width), IGNORE_INDEX)
        for r, s in enumerate(group):
            ids[r, : len(s)] = s.input_ids.long()
            mask[r, : len(s)] = 1
            labels[r, : len(s)] = s.labels()
        out.append((ids, mask, labels, sum(len(s) for s in group)))
    return out


def run_stock(args: argparse.Namespace, samples: list[Sample], runtime: Runtime) -> dict:
    model = build_model(args.shape, "sdpa", runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=runtime.device.type == "cuda")
    times, tokens = [], []
    for step in range(args.warmup_steps + args.steps):
        sync(runtime.device)
        t0 = time.perf_counter()
        batches = stock_batches(samples, args.stock_batch, args.tokens_per_step, step, pad_id=0)
        loss_sum = torch.zeros((), device=runtime.device)
        for ids, mask, labels, _ in batches:
            with runtime.autocast():
                out = model(
                    input_ids=ids.to(runtime.device),
                    attention_mask=mask.to(runtime.device),
                    labels=labels.to(runtime.device),
                    use_cache=False,
                )
            (out.loss / len(batches)).backward()
            loss_sum += out.loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_sum.item()  # reads the loss: the step is done
        if step >= args.warmup_steps:
            times.append(time.perf_counter() - t0)
            tokens.append(sum(b[3] for b in batches))
    return {"model": model, "times": times, "tokens": tokens}


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def kernel_used(loop: str, args: argparse.Namespace, device: torch.device) -> str:
    """The attention kernel a loop's forward passes ran."""
    if loop == "stock":
        return "sdpa (padded, transformers)"
    if args.attn == "varlen":
        return f"varlen/{attention.kernel_for(device)}"
    return args.attn


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process (a recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def measure_shape(
    args: argparse.Namespace, runtime: Runtime, peak: float | None, report: Any
) -> dict:
    """Every loop of ``args.loops`` on ``args.shape``: loop → figures (or the error); each row
    goes to ``report(loop, row)`` as soon as it is measured."""
    tiny = args.shape == "tiny"
    min_len, max_len = (45, 210) if tiny else (450, 2100)  # tiny: the same spread, ÷10
    args.sample_lengths = f"{min_len}-{max_len}"
    vocab = SHAPES[args.shape]["vocab_size"]
    mean_len = (min_len + max_len) / 2
    n_samples = math.ceil(
        (args.warmup_steps + args.steps + 1) * args.tokens_per_step / mean_len * 1.2
    )
    samples = random_samples(n_samples, vocab, min_len, max_len, seed=0)
    device, cuda = runtime.device, runtime.device.type == "cuda"
    rows: dict[str, dict] = {}
    for loop in args.loops.split(","):
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:  # one loop failing (OOM, a missing kernel) keeps the other loops' figures
            run = run_stock if loop == "stock" else run_ours
            args.compile = loop == "ours+compile"
            graphs_before = compiled_graphs()
            result = run(args, samples, runtime)
            fpt = flops_per_token(result["model"], samples)
            tokens_per_s = statistics.median(result["tokens"]) / statistics.median(result["times"])
            rows[loop] = {
                "tokens_per_s": tokens_per_s,
                "mfu": fpt * tokens_per_s / peak if peak else None,
                "memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
                "step_s": statistics.median(result["times"]),
                "attention_kernel": kernel_used(loop, args, device),
                "compiled_graphs": compiled_graphs() - graphs_before,
            }
            del result
        except Exception as exc:  # noqa: BLE001 - reported in the table, then exit 1
            rows[loop] = {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
            print(f"{args.shape} {loop} loop failed: {exc!r}", file=sys.stderr)
        report(loop, rows)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--shape", "--model-shape", default="0.5b", help=f"comma-separated: {sorted(SHAPES)}"
    )
    p.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per loop")
    p.add_argument("--warmup-steps", type=int, default=2)
    p.add_argument("--tokens-per-step", type=int, default=None, help="default 65536 (tiny: 4096)")
    p.add_argument(
        "--max-length", type=int, default=None, help="row length; default 4096 (tiny: 512)"
    )
    p.add_argument(
        "--attn", default="varlen", help="ours: varlen | sdpa | flex_attention | flash_attention_2"
    )
    p.add_argument("--micro-batch-rows", type=int, default=2, help="ours: rows per forward")
    p.add_argument("--stock-batch", type=int, default=4, help="samples per padded micro-batch")
    p.add_argument(
        "--loops", default="stock,ours", help="stock | ours | ours+compile, comma-separated"
    )
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="for MFU when the GPU is unknown"
    )
    p.add_argument("--json-dir", default=None, help="write <shape>.json with every figure here")
    args = p.parse_args()
    shapes = args.shape.split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        p.error(f"unknown shape(s) {unknown}: choose from {sorted(SHAPES)}")
    tokens_per_step, max_length = args.tokens_per_step, args.max_length

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    runtime = Runtime(device, 0, 1, torch.float32, torch.bfloat16 if cuda else None)
    peak = peak_flops(device, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if cuda else "CPU"

    label = {
        "stock": "stock loop, padded batches",
        "ours": f"cgd.train packed ({args.attn}, {args.micro_batch_rows} rows/micro-batch)",
        "ours+compile": f"cgd.train packed ({args.attn}, {args.micro_batch_rows} rows, compiled)",
    }
    print(f"\nDevice: {name}; torch {torch.__version__}; median of {args.steps} steps per loop\n")
    print("| loop | real tokens/s | MFU | peak memory GiB | step s | vs stock | kernel | shape |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    failed = []
    for shape in shapes:
        args.shape = shape
        args.tokens_per_step = tokens_per_step or (4096 if shape == "tiny" else 65536)
        args.max_length = max_length or (512 if shape == "tiny" else 4096)

        def report(loop: str, rows: dict) -> None:
            where = (
                f"{args.shape} ({args.tokens_per_step} tok/step, row {args.max_length}, "
                f"samples {args.sample_lengths})"
            )
            r = rows[loop]
            if "error" in r:
                failed.append(f"{args.shape} {loop}")
                print(f"| {label[loop]} | failed: {r['error']} | | | | | | {where} |", flush=True)
                return
            base = rows.get("stock", {}).get("tokens_per_s")
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            mem = f"{r['memory_gib']:.1f}" if r["memory_gib"] is not None else "n/a"
            ratio = f"{r['tokens_per_s'] / base:.2f}×" if base else "n/a"
            print(
                f"| {label[loop]} | {r['tokens_per_s']:,.0f} | {mfu} | {mem} | "
                f"{r['step_s']:.3f} | {ratio} | {r['attention_kernel']} | {where} |",
                flush=True,
            )

        rows = measure_shape(args, runtime, peak, report)
        if args.json_dir:
            out = Path(args.json_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{shape}.json").write_text(
                json.dumps(
                    {
                        "device": name,
                        "torch": torch.__version__,
                        "shape": shape,
                        "tokens_per_step": args.tokens_per_step,
                        "max_length": args.max_length,
                        "sample_lengths": args.sample_lengths,
                        "steps": args.steps,
                        "loops": rows,
                    },
                    indent=1,
                )  # fmt: skip
            )
    if failed:
        print(f"FAILED: {', '.join(failed)} (see the rows above)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
