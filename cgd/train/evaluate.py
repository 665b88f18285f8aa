"""Evaluation as in docs/method.md ("Evaluation"): zero-shot, "reason step by step,
\\boxed{}", greedy, and avg@k over k samples for small sets (AIME/AMC) when asked.

Eval sets are bundled names (math500, amc23, aime24; gsm8k when its test split is bundled) or
JSONL files (including uploaded datasets the trainer downloads), each with a field mapping and a
verifier kind: ``SOURCE[:question=F:answer=F:kind=math|choice|exact:k=N...]`` (see
:func:`parse_eval_set`). A file with only a worked ``solution`` is graded against the solution's
boxed final answer.

Generation runs either on the live training model (transformers ``generate``, left padding,
batched, longest prompts first) or, for a saved model, on vLLM: its offline engine where
``import vllm`` works (a GPU host), else a vLLM server started for the model from the vLLM
virtualenv (:mod:`cgd.local_vllm`; CPU machines and CI). Both get the same token ids, greedy, the
same budget, and stop at the model's end-of-turn token.

Scoring grades each completion with ``cgd.verify``; per-sample logs (JSONL) and
``results.json`` (per set: ``n``, greedy accuracy, and ``k``, avg@k, pass@k) are written to
the output directory.

Protocol (issue 23, departure 4): a completion cut off by the token budget (no end-of-turn,
vLLM ``finish_reason == "length"``) is "no answer": it is not graded on whatever number it
happens to contain (``truncated: true``, ``extracted: null``, ``correct: false``). pass@k is the
unbiased estimator over ``n >= k`` samples (:mod:`cgd.train.passk`). A model without a chat
template (a base model) also stops at :data:`BASE_STOP_STRINGS`, where it would start the next
question of its plain prompt format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from cgd.answers import extract_boxed, reference_answer
from cgd.curation.eval_sets import (
    ANSWER_FIELDS,
    CHOICE_FIELDS,
    EVAL_SETS,
    EXTRA_SETS,
    QUESTION_FIELDS,
    SOLUTION_FIELDS,
    EvalSet,
    Sampling,
    load_eval_set,
    parse_eval_set,
)
from cgd.templates import EVAL_SYSTEM
from cgd.train.data import encode_prompt, render_prompt
from cgd.train.model import CausalLM, load_model, load_tokenizer, masked_attention
from cgd.train.passk import avg_at_k, mean_pass_at_k
from cgd.verify import VerifierPool, check

logger = logging.getLogger("cgd.train.evaluate")

# -- eval sets: bundled names or JSONL files, with a field mapping -----------------------------


def _answer_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # AMC-style 27.0
    return str(value)


def _format_choices(choices: Any) -> str:
    if isinstance(choices, dict):
        items = list(choices.items())
    else:
        items = [(chr(ord("A") + i), text) for i, text in enumerate(choices)]
    return "\n".join(f"({letter}) {text}" for letter, text in items)


def _pick(row: dict[str, Any], explicit: str | None, candidates: tuple[str, ...]) -> str | None:
    if explicit is not None:
        return explicit if explicit in row else None
    return next((f for f in candidates if row.get(f) not in (None, "")), None)


def rows_from_records(records: list[dict[str, Any]], spec: EvalSet) -> list[dict[str, str]]:
    """Rows ``{id, problem, answer}`` from raw records under ``spec``'s field mapping.

    The reference of a ``solution`` field is the solution's final answer (its last
    ``\\boxed{}``, or GSM8K's ``#### X``). Errors name the row and the field.
    """
    rows = []
    for i, record in enumerate(records):
        where = f"eval set {spec.name!r} row {i + 1}"
        question_field = _pick(record, spec.question_field, QUESTION_FIELDS)
        if question_field is None:
            wanted = spec.question_field or " / ".join(QUESTION_FIELDS)
            raise ValueError(f"{where}: no question field ({wanted})")
        answer_field = _pick(record, spec.answer_field, ANSWER_FIELDS)
        if answer_field is None:
            wanted = spec.answer_field or " / ".join(ANSWER_FIELDS)
            raise ValueError(f"{where}: no reference field ({wanted})")
        value = record[answer_field]
        if answer_field in SOLUTION_FIELDS:
            text = str(value)
            answer = extract_boxed(text) or (reference_answer(text) if "####" in text else None)
            if not answer:
                raise ValueError(f"{where}: {answer_field!r} has no \\boxed{{}} final answer")
        else:
            answer = _answer_text(value)
        problem = str(record[question_field])
        choices = next((record[f] for f in CHOICE_FIELDS if record.get(f)), None)
        if choices and spec.kind == "choice":
            problem = f"{problem}\n\n{_format_choices(choices)}"
        row_id = record.get("id", record.get("unique_id", i))
        rows.append({"id": str(row_id), "problem": problem, "answer": answer})
    return rows


def _read_records(path: str) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {line_number}: bad JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path} line {line_number}: expected a JSON object")
            records.append(record)
    return records


def load_eval_rows(spec: str | EvalSet, limit: int | None = None) -> list[dict[str, str]]:
    """Rows ``{id, problem, answer}`` of an eval set (see :func:`parse_eval_set`)."""
    eval_set = parse_eval_set(spec)
    source = eval_set.source
    if source in EVAL_SETS and eval_set.question_field is None and eval_set.answer_field is None:
        rows = load_eval_set(source)
    elif source in EXTRA_SETS:
        resource = resources.files("cgd").joinpath("data", EXTRA_SETS[source])
        if not resource.is_file():
            raise FileNotFoundError(
                f"eval set {source!r} is not bundled (cgd/data/{EXTRA_SETS[source]} is absent); "
                "pass the JSONL file's path instead"
            )
        rows = rows_from_records(
            [json.loads(x) for x in resource.read_text("utf-8").splitlines() if x.strip()],
            eval_set,
        )
    elif source in EVAL_SETS:
        path = resources.files("cgd").joinpath("data", f"{source}.jsonl")
        records = [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]
        rows = rows_from_records(records, eval_set)
    else:
        rows = rows_from_records(_read_records(source), eval_set)
    return rows[:limit]


def eval_prompt(tokenizer: Any, problem: str) -> str:
    messages = [{"role": "system", "content": EVAL_SYSTEM}, {"role": "user", "content": problem}]
    return render_prompt(tokenizer, messages)


# -- generation --------------------------------------------------------------------------------

# A base model's plain prompt is "Question: …\n\nAnswer:" (data.render_prompt): left alone it
# goes on to invent the next question, so generation stops where one would start.
BASE_STOP_STRINGS = ("\n\nQuestion:", "\n\nProblem:")


def stop_strings(tokenizer: Any) -> list[str]:
    """Extra stop strings for ``tokenizer``'s model: none with a chat template (its end-of-turn
    token ends the answer), :data:`BASE_STOP_STRINGS` without one (eos still stops too)."""
    return [] if getattr(tokenizer, "chat_template", None) else list(BASE_STOP_STRINGS)


class Completion(str):
    """A generated text that knows whether the token budget cut it off (``truncated``): it
    ended neither at end-of-turn/eos nor at a stop string. A plain ``str`` reads as complete."""

    truncated: bool

    def __new__(cls, text: str, truncated: bool = False) -> Completion:
        obj = super().__new__(cls, text)
        obj.truncated = truncated
        return obj


def is_truncated(output: str) -> bool:
    return bool(getattr(output, "truncated", False))


# generate(prompts, sampling) -> completions: greedy (one per prompt, in order) when sampling is
# None, else sampling.k per prompt (prompt-major: all of prompt 0's samples, then prompt 1's...).
# Generators return Completion (str + truncated); plain strings count as complete.
Generate = Callable[[list[str], Sampling | None], list[str]]


@torch.no_grad()
def generate_hf(
    model: CausalLM,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    autocast: torch.autocast,
    sampling: Sampling | None = None,
    stop: list[str] | None = None,
) -> list[str]:
    """Completions of ``prompts`` with transformers ``generate``: greedy, or ``sampling.k``
    samples per prompt (prompt-major order), each a :class:`Completion` marked ``truncated``
    when it used all ``max_new_tokens`` without eos or a stop string (``stop``; default
    :func:`stop_strings`), which is cut off the text as vLLM does."""
    device = next(model.parameters()).device
    copies = sampling.k if sampling is not None else 1
    expanded = [p for p in prompts for _ in range(copies)]
    encoded = [encode_prompt(tokenizer, p) for p in expanded]
    order = sorted(range(len(expanded)), key=lambda i: -len(encoded[i]))  # less padding per batch
    outputs: list[str] = [""] * len(expanded)
    stops = stop_strings(tokenizer) if stop is None else stop
    # Every id generate() ends a sequence at: the model's generation config may list several
    # (an instruct model's end-of-turn and its base eos), plus the tokenizer's eos.
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if not isinstance(configured, list):
        configured = [] if configured is None else [configured]
    eos_ids = {int(i) for i in configured} | {tokenizer.eos_token_id}
    pad = tokenizer.pad_token_id
    was_training = model.training
    model.eval()
    options: dict[str, Any] = {"do_sample": False}
    if sampling is not None:
        torch.manual_seed(sampling.seed)
        options = {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in index)
        ids = torch.full((len(index), width), tokenizer.pad_token_id)  # (b, t), left padded
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        with autocast, masked_attention(model):
            out = model.generate(  # type: ignore[operator]
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **({"stop_strings": stops, "tokenizer": tokenizer} if stops else {}),
                **options,
            )  # (b, t + new)
        new = out[:, width:]  # (b, new)
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        for row, (i, text) in enumerate(zip(index, texts, strict=True)):
            tokens = new[row].tolist()
            # A finished row holds eos, or (stopped by a string in a longer batch) trailing pads;
            # a row that ran to the budget holds max_new_tokens real tokens and neither.
            ended = any(t in eos_ids for t in tokens) or (pad not in eos_ids and pad in tokens)
            cut = text
            for marker in stops:
                at = text.find(marker)
                if at >= 0:  # vLLM leaves the stop string out; so do we
                    cut, ended = cut[: min(at, len(cut))], True
            outputs[i] = Completion(cut, truncated=not ended and len(tokens) >= max_new_tokens)
    model.train(was_training)
    return outputs


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def generate_vllm(
    llm: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    sampling: Sampling | None = None,
) -> list[str]:
    """Completions with a vLLM offline engine ``vllm.LLM`` (GPU hosts only): greedy, or
    ``sampling.k`` per prompt (prompt-major order); ``finish_reason == "length"`` marks a
    :class:`Completion` truncated."""
    from vllm import SamplingParams

    stop = stop_strings(tokenizer) or None
    if sampling is None:
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=stop)
    else:
        params = SamplingParams(
            n=sampling.k,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            seed=sampling.seed,
            max_tokens=max_new_tokens,
            stop=stop,
        )
    # Token ids, not text: vLLM would add a second BOS to chat-templated prompts.
    requests = [{"prompt_token_ids": encode_prompt(tokenizer, p)} for p in prompts]
    return [
        Completion(o.text, truncated=o.finish_reason == "length")
        for request in llm.generate(requests, params)
        for o in request.outputs
    ]


def generate_vllm_server(
    base_url: str,
    model: str,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    sampling: Sampling | None = None,
    concurrency: int = 64,
) -> list[str]:
    """Completions from a vLLM server's ``/v1/completions`` (token-id prompts, as the offline
    engine gets them): greedy, or ``sampling.k`` per prompt (prompt-major order)."""
    import aiohttp

    body: dict[str, Any] = {"model": model, "max_tokens": max_new_tokens, "temperature": 0.0}
    stop = stop_strings(tokenizer)
    if stop:
        body["stop"] = stop
    if sampling is not None:
        body |= {
            "n": sampling.k,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        }

    async def run() -> list[list[str]]:
        gate = asyncio.Semaphore(concurrency)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=3600)
        async with aiohttp.ClientSession(timeout=timeout) as http:

            async def one(prompt: str) -> list[str]:
                async with gate:
                    payload = body | {"prompt": encode_prompt(tokenizer, prompt)}
                    async with http.post(f"{base_url}/completions", json=payload) as r:
                        if r.status != 200:
                            raise RuntimeError(
                                f"vLLM answered {r.status}: {(await r.text())[:300]}"
                            )
                        choices = (await r.json())["choices"]
                        return [
                            Completion(c["text"], truncated=c.get("finish_reason") == "length")
                            for c in sorted(choices, key=lambda c: c["index"])
                        ]

            return await asyncio.gather(*(one(p) for p in prompts))

    return [text for texts in asyncio.run(run()) for text in texts]


@contextlib.contextmanager
def vllm_generator(
    model_path: str, tokenizer: Any, max_new_tokens: int, log_dir: Path, seed: int = 0
) -> Iterator[Generate]:
    """A :data:`Generate` on vLLM for a saved model: the offline engine where ``import vllm``
    works, else a vLLM server (:mod:`cgd.local_vllm`) started for it and stopped at the end.
    Sampling is seeded with ``seed`` (the run's seed)."""
    inner = _vllm_generator(model_path, tokenizer, max_new_tokens, log_dir)
    with inner as generate:

        def seeded(prompts: list[str], sampling: Sampling | None) -> list[str]:
            if sampling is not None and seed:
                sampling = Sampling(sampling.k, sampling.temperature, sampling.top_p, seed)
            return generate(prompts, sampling)

        yield seeded


@contextlib.contextmanager
def _vllm_generator(
    model_path: str, tokenizer: Any, max_new_tokens: int, log_dir: Path
) -> Iterator[Generate]:
    if vllm_available():
        from vllm import LLM

        llm = LLM(model=model_path, dtype="bfloat16", enable_prefix_caching=True)

        def offline(prompts: list[str], sampling: Sampling | None) -> list[str]:
            return generate_vllm(llm, tokenizer, prompts, max_new_tokens, sampling)

        yield offline
        return
    from transformers import AutoConfig

    from cgd.local_vllm import free_port, start_vllm

    # Room for the longest eval prompt (MATH-500's are under 1k tokens) plus the budget.
    limit = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    max_model_len = min(limit or 1 << 30, max_new_tokens + 4096)
    server = start_vllm(
        model_path,
        port=free_port(),
        served_name="eval",
        log=log_dir / "vllm.log",
        max_model_len=max_model_len,
    )
    logger.info("eval: vLLM serves %s at %s (log %s)", model_path, server.url, server.log)
    with server:

        def served(prompts: list[str], sampling: Sampling | None) -> list[str]:
            return generate_vllm_server(
                server.url, server.model, tokenizer, prompts, max_new_tokens, sampling
            )

        yield served


def check_vllm_backend() -> None:
    """Raise (with what to do) unless vLLM can run here: importable, or its virtualenv."""
    if vllm_available():
        return
    from cgd.local_vllm import vllm_python

    vllm_python()


# -- scoring -----------------------------------------------------------------------------------


def score_outputs(
    eval_rows: list[dict[str, str]],
    outputs: list[str],
    pool: VerifierPool | None = None,
    kind: str = "math",
) -> tuple[float, list[dict[str, Any]]]:
    """(accuracy, per-sample records) of ``outputs`` against the rows' reference answers,
    graded by the verifier ``kind`` (math | choice | exact). A truncated output is "no answer":
    never graded (a stray number in a cut-off chain of thought is not an answer)."""
    cut = [is_truncated(out) for out in outputs]
    graded = [i for i, c in enumerate(cut) if not c]
    items = [(kind, str(outputs[i]), eval_rows[i]["answer"]) for i in graded]
    checked = pool.verify_many(items) if pool is not None else [check(*item) for item in items]
    verdicts: list[Any] = [None] * len(outputs)
    for i, v in zip(graded, checked, strict=True):
        verdicts[i] = v
    records: list[dict[str, Any]] = [
        {
            "id": row["id"],
            "problem": row["problem"],
            "answer": row["answer"],
            "output": str(out),
            "truncated": truncated,
            "extracted": None if v is None else v.extracted,
            "correct": v is not None and bool(v.correct),
        }
        for row, out, truncated, v in zip(eval_rows, outputs, cut, verdicts, strict=True)
    ]
    accuracy = sum(r["correct"] for r in records) / max(1, len(records))
    return accuracy, records


def output_file(out_dir: str | Path, filename: str) -> Path:
    """``out_dir/filename``, refused unless it resolves to a file directly inside ``out_dir``:
    set names come from requests, and a checked spec is no guarantee for every caller."""
    root = Path(out_dir).resolve()
    path = (root / filename).resolve()
    if path.parent != root:
        raise ValueError(f"eval output {filename!r} would be written outside {root}")
    return path


def write_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


@dataclass
class SetResult:
    """One eval set's results: greedy accuracy on ``n`` problems and, when sampled, avg@k
    (mean accuracy over the samples) and unbiased pass@k from ``samples`` >= k per problem.
    ``problems``: per problem, in eval-set order, its id, greedy verdict, no-answer flag and
    sampled verdicts (the experiments report recomputes its statistics from these)."""

    name: str
    kind: str
    n: int
    accuracy: float  # greedy
    k: int = 1
    avg_at_k: float | None = None
    pass_at_k: float | None = None
    temperature: float | None = None
    samples: int | None = None  # sampled completions per problem (n of pass@k)
    no_answer: int = 0  # greedy completions cut off by the budget
    problems: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data.pop("problems")
        if self.samples is None:
            for key in ("avg_at_k", "pass_at_k", "temperature", "samples"):
                data.pop(key)
        return {**data, **self.extra}


def evaluate_set(
    spec: str | EvalSet,
    tokenizer: Any,
    generate: Generate,
    *,
    out_dir: str | Path,
    limit: int | None = None,
    pool: VerifierPool | None = None,
) -> SetResult:
    """Greedy accuracy (and avg@k, unbiased pass@k when the set samples) of one eval set;
    per-sample logs in ``out_dir/<name>.jsonl`` (greedy) and ``out_dir/<name>.avg@<k>.jsonl``
    (every sample, ``sample`` = its index among the problem's ``n``)."""
    eval_set = parse_eval_set(spec)
    # Both paths checked before any work, so a bad name costs no generation.
    greedy_file = output_file(out_dir, f"{eval_set.name}.jsonl")
    samples_file = output_file(out_dir, f"{eval_set.name}.avg@{eval_set.k}.jsonl")
    rows = load_eval_rows(eval_set, limit)
    prompts = [eval_prompt(tokenizer, r["problem"]) for r in rows]
    accuracy, records = score_outputs(rows, generate(prompts, None), pool, eval_set.kind)
    for record, prompt in zip(records, prompts, strict=True):
        record["prompt"] = prompt
    write_records(greedy_file, records)
    result = SetResult(eval_set.name, eval_set.kind, len(rows), accuracy)
    result.no_answer = sum(r["truncated"] for r in records)
    result.k = eval_set.k
    per_problem: list[list[bool]] | None = None
    sampling = eval_set.sampling
    if sampling is not None and rows:
        outputs = generate(prompts, sampling)
        n = sampling.k  # samples drawn per problem (the set's n, at least k)
        expanded = [row for row in rows for _ in range(n)]
        _, samples = score_outputs(expanded, outputs, pool, eval_set.kind)
        for j, record in enumerate(samples):
            record["sample"] = j % n
        per_problem = [
            [r["correct"] for r in samples[i * n : (i + 1) * n]] for i in range(len(rows))
        ]
        result.samples = n
        result.temperature = sampling.temperature
        result.avg_at_k = avg_at_k(per_problem)
        result.pass_at_k = mean_pass_at_k(per_problem, eval_set.k)
        write_records(samples_file, samples)
    result.problems = {
        "ids": [r["id"] for r in records],
        "correct": [r["correct"] for r in records],
        "no_answer": [r["truncated"] for r in records],
        "samples": per_problem,
        "k": eval_set.k,
    }
    return result


def evaluate_sets_detailed(
    sets: list[str] | list[EvalSet],
    tokenizer: Any,
    generate: Generate,
    *,
    out_dir: str | Path,
    limit: int | None = None,
    pool: VerifierPool | None = None,
) -> dict[str, SetResult]:
    """:class:`SetResult` per set; also written to ``out_dir/results.json``."""
    results = {}
    for spec in sets:
        result = evaluate_set(spec, tokenizer, generate, out_dir=out_dir, limit=limit, pool=pool)
        results[result.name] = result
        logger.info("eval %s: %s", result.name, json.dumps(result.as_dict()))
    path = Path(out_dir) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v.as_dict() for k, v in results.items()}, indent=1))
    return results


def accuracy_summary(results: dict[str, SetResult]) -> dict[str, float]:
    """Flat ``{name: greedy accuracy}``, plus ``{name}/avg@{k}`` for sets sampled k > 1."""
    flat: dict[str, float] = {}
    for name, result in results.items():
        flat[name] = result.accuracy
        if result.avg_at_k is not None and not math.isnan(result.avg_at_k):
            flat[f"{name}/avg@{result.k}"] = result.avg_at_k
    return flat


def evaluate_sets(
    sets: list[str] | list[EvalSet],
    tokenizer: Any,
    generate: Generate,
    *,
    out_dir: str | Path,
    limit: int | None = None,
    pool: VerifierPool | None = None,
) -> dict[str, float]:
    """Accuracy per set (see :func:`accuracy_summary`) for any ``generate``; logs and
    ``results.json`` (with ``n``, ``k``) in ``out_dir``."""
    detailed = evaluate_sets_detailed(
        sets, tokenizer, generate, out_dir=out_dir, limit=limit, pool=pool
    )
    return accuracy_summary(detailed)


def evaluate_model(
    model: CausalLM,
    tokenizer: Any,
    sets: list[str] | list[EvalSet],
    *,
    out_dir: str | Path,
    max_new_tokens: int,
    batch_size: int,
    autocast: torch.autocast,
    limit: int | None = None,
    pool: VerifierPool | None = None,
) -> dict[str, float]:
    """Evaluate a live (e.g. training) model with transformers ``generate``."""
    generate = hf_generator(
        model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size, autocast=autocast
    )
    return evaluate_sets(sets, tokenizer, generate, out_dir=out_dir, limit=limit, pool=pool)


def hf_generator(
    model: CausalLM,
    tokenizer: Any,
    *,
    max_new_tokens: int,
    batch_size: int,
    autocast: torch.autocast,
    seed: int = 0,
) -> Generate:
    """A :data:`Generate` on a live model with transformers ``generate``; sampling is seeded
    with ``seed`` (the run's seed) so two runs differ only where their weights do."""

    def generate(prompts: list[str], sampling: Sampling | None) -> list[str]:
        if sampling is not None and seed:
            sampling = Sampling(sampling.k, sampling.temperature, sampling.top_p, seed)
        return generate_hf(
            model,
            tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            autocast=autocast,
            sampling=sampling,
        )

    return generate


def evaluate_path(
    model_path: str,
    sets: list[str] | list[EvalSet],
    *,
    out_dir: str | Path,
    max_new_tokens: int,
    batch_size: int = 32,
    limit: int | None = None,
    backend: str = "auto",
) -> dict[str, float]:
    """Evaluate a saved model: vLLM when asked (``vllm``: the offline engine, else a server from
    the vLLM virtualenv) or ``auto`` and importable, else transformers (``hf``).
    Detailed results (``n``, ``k``, avg@k, pass@k) are in ``out_dir/results.json``."""
    sets = [parse_eval_set(s) for s in sets]
    for spec in sets:  # fail on a bad set before loading a model
        load_eval_rows(spec, 1)
    tokenizer = load_tokenizer(model_path)
    with VerifierPool() as pool:
        if backend == "vllm" or (backend == "auto" and vllm_available()):
            with vllm_generator(model_path, tokenizer, max_new_tokens, Path(out_dir)) as generate:
                return evaluate_sets(
                    sets, tokenizer, generate, out_dir=out_dir, limit=limit, pool=pool
                )
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
