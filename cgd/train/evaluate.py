"""Math evaluation as in docs/method.md ("Evaluation"): zero-shot, greedy, "reason step by
step, \\boxed{}".

Generation runs either on the live training model (transformers ``generate``, left padding,
batched, longest prompts first) or, for a saved model on a GPU host where ``import vllm`` works,
on a vLLM offline engine. Scoring extracts the final answer and grades it with
``cgd.verify`` (symbolic/numeric equivalence); a per-sample log is written as JSONL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cgd.curation.eval_sets import EVAL_SETS, load_eval_set
from cgd.templates import EVAL_SYSTEM
from cgd.train.data import encode_prompt, read_jsonl, render_prompt
from cgd.train.model import CausalLM, load_model, load_tokenizer
from cgd.verify import VerifierPool, check


def load_eval_rows(name_or_path: str, limit: int | None = None) -> list[dict[str, str]]:
    """Rows {id, problem, answer} of a bundled set (math500, amc23, aime24) or a JSONL file."""
    if name_or_path in EVAL_SETS:
        rows = load_eval_set(name_or_path)
    else:
        rows = [
            {
                "id": str(r.get("id", r.get("unique_id", i))),
                "problem": r.get("problem") or r["question"],
                "answer": str(r["answer"]),
            }
            for i, r in enumerate(read_jsonl(name_or_path))
        ]
    return rows[:limit]


def set_name(name_or_path: str) -> str:
    return name_or_path if name_or_path in EVAL_SETS else Path(name_or_path).stem


def eval_prompt(tokenizer: Any, problem: str) -> str:
    messages = [{"role": "system", "content": EVAL_SYSTEM}, {"role": "user", "content": problem}]
    return render_prompt(tokenizer, messages)


# -- generation --------------------------------------------------------------------------------


@torch.no_grad()
def generate_hf(
    model: CausalLM,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    autocast: torch.autocast,
) -> list[str]:
    """Greedy completions of ``prompts`` (in order) with transformers ``generate``."""
    device = next(model.parameters()).device
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # less padding per batch
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in index)
        ids = torch.full((len(index), width), tokenizer.pad_token_id)  # (b, t), left padded
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        with autocast:
            out = model.generate(  # type: ignore[operator]
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )  # (b, t + new)
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        for i, text in zip(index, texts, strict=True):
            outputs[i] = text
    model.train(was_training)
    return outputs


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def generate_vllm(llm: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy completions with a vLLM offline engine ``vllm.LLM`` (GPU hosts only)."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
    # Token ids, not text: vLLM would add a second BOS to chat-templated prompts.
    requests = [{"prompt_token_ids": encode_prompt(tokenizer, p)} for p in prompts]
    return [o.outputs[0].text for o in llm.generate(requests, params)]


# -- scoring -----------------------------------------------------------------------------------


def score_outputs(
    eval_rows: list[dict[str, str]], outputs: list[str], pool: VerifierPool | None = None
) -> tuple[float, list[dict[str, Any]]]:
    """(accuracy, per-sample records) of ``outputs`` against the rows' reference answers."""
    items = [("math", out, row["answer"]) for row, out in zip(eval_rows, outputs, strict=True)]
    verdicts = pool.verify_many(items) if pool is not None else [check(*item) for item in items]
    records: list[dict[str, Any]] = [
        {
            "id": row["id"],
            "problem": row["problem"],
            "answer": row["answer"],
            "output": out,
            "extracted": v.extracted,
            "correct": bool(v.correct),
        }
        for row, out, v in zip(eval_rows, outputs, verdicts, strict=True)
    ]
    accuracy = sum(r["correct"] for r in records) / max(1, len(records))
    return accuracy, records


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def evaluate_sets(
    sets: list[str],
    tokenizer: Any,
    generate: Callable[[list[str]], list[str]],
    *,
    out_dir: str | Path,
    limit: int | None = None,
    pool: VerifierPool | None = None,
) -> dict[str, float]:
    """Accuracy per set for any ``generate(prompts) -> outputs``; logs: ``out_dir/<set>.jsonl``."""
    results = {}
    for name in sets:
        rows = load_eval_rows(name, limit)
        prompts = [eval_prompt(tokenizer, r["problem"]) for r in rows]
        accuracy, records = score_outputs(rows, generate(prompts), pool)
        for record, prompt in zip(records, prompts, strict=True):
            record["prompt"] = prompt
        write_records(Path(out_dir) / f"{set_name(name)}.jsonl", records)
        results[set_name(name)] = accuracy
    return results


def evaluate_model(
    model: CausalLM,
    tokenizer: Any,
    sets: list[str],
    *,
    out_dir: str | Path,
    max_new_tokens: int,
    batch_size: int,
    autocast: torch.autocast,
    limit: int | None = None,
    pool: VerifierPool | None = None,
) -> dict[str, float]:
    """Evaluate a live (e.g. training) model with transformers ``generate``."""

    def generate(prompts: list[str]) -> list[str]:
        return generate_hf(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            autocast=autocast,
        )

    return evaluate_sets(sets, tokenizer, generate, out_dir=out_dir, limit=limit, pool=pool)


def evaluate_path(
    model_path: str,
    sets: list[str],
    *,
    out_dir: str | Path,
    max_new_tokens: int,
    batch_size: int = 32,
    limit: int | None = None,
    backend: str = "auto",
) -> dict[str, float]:
    """Evaluate a saved model: vLLM when asked (or ``auto`` and importable), else transformers."""
    tokenizer = load_tokenizer(model_path)
    with VerifierPool() as pool:
        if backend == "vllm" or (backend == "auto" and vllm_available()):
            from vllm import LLM

            llm = LLM(model=model_path, dtype="bfloat16", enable_prefix_caching=True)

            def generate(prompts: list[str]) -> list[str]:
                return generate_vllm(llm, tokenizer, prompts, max_new_tokens)

            return evaluate_sets(sets, tokenizer, generate, out_dir=out_dir, limit=limit, pool=pool)
        cuda = torch.cuda.is_available()
        model = load_model(
            model_path,
            dtype=torch.bfloat16 if cuda else torch.float32,
            attn_implementation="sdpa",
            device=torch.device("cuda" if cuda else "cpu"),
        )
        return evaluate_model(
            model,
            tokenizer,
            sets,
            out_dir=out_dir,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            autocast=torch.autocast("cpu", enabled=False),
            limit=limit,
            pool=pool,
        )
