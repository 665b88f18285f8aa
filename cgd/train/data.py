"""From an export file to packed, document-separated micro-batches.

1. Read the export (JSONL, streamed line by line) and turn every row into one tokenized sample:
   the prompt rendered with the model's own chat template (a plain "Question: …\\n\\nAnswer:"
   prompt when the tokenizer has none), then the target and the end-of-turn token. Labels are
   -100 on the prompt, so the loss sees exactly the target tokens + EOS.
2. Over-long samples lose context, never target: the student's initial answer is cut first, then
   the critique, then the question. A cut keeps the beginning AND the end of the text and drops
   the middle behind a visible marker (issue 23, departure 3: the end of a student answer holds
   its final answer, which the critique talks about). A sample whose target alone does not fit
   is dropped and counted (DataStats), never cut.
3. Each epoch: a seeded permutation of the samples, best-fit packing into rows of at most
   ``max_length`` tokens within windows of ``pack_window`` samples, then a seeded shuffle of the
   rows. Position ids restart at 0 for every document, which is what keeps documents apart in
   attention (see model.py), and ``cu_seqlens`` records the boundaries.
4. The plan is a pure function of (seed, epoch), so the data position is just the step number:
   ``StepLoader.state_dict()`` saves it, ``load_state_dict`` restores it exactly.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from cgd.curation import formats

IGNORE_INDEX = -100
CONTEXT_FIELDS = ("initial_response", "critique", "prompt")  # cut in this order when too long
TRUNCATION_MARK = "\n[…]\n"
_TRUNCATION_SLACK = 4  # extra tokens removed per cut: re-tokenising at the cut can merge pieces
Message = dict[str, str]


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def detect_layout(row: dict[str, Any]) -> str:
    return "messages" if "messages" in row else "native"


# -- prompts -----------------------------------------------------------------------------------


def render_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """Prompt text up to where the assistant starts (system and user turns only)."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text)
    # Base models (reference release): a plain "Question: …\n\nAnswer:" prompt.
    system = "".join(m["content"] + "\n\n" for m in messages if m["role"] == "system")
    user = "\n\n".join(m["content"] for m in messages if m["role"] == "user")
    return f"{system}Question: {user}\n\nAnswer:"


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    # Chat templates write BOS themselves; a plain prompt needs the tokenizer's own specials.
    ids: list[int] = tokenizer(text, add_special_tokens=not tokenizer.chat_template).input_ids
    return ids


def encode_target(tokenizer: Any, text: str) -> list[int]:
    """Target tokens + EOS (the model must learn to stop); a space after the plain "Answer:"."""
    text = text if tokenizer.chat_template else " " + text
    return [*tokenizer(text, add_special_tokens=False).input_ids, tokenizer.eos_token_id]


# -- samples -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    input_ids: torch.Tensor  # (n,) int32: prompt then target + EOS
    n_prompt: int  # labels are -100 on input_ids[:n_prompt]
    truncated: bool = False

    def __len__(self) -> int:
        return self.input_ids.numel()

    def labels(self) -> torch.Tensor:
        labels = self.input_ids.long().clone()  # (n,)
        labels[: self.n_prompt] = IGNORE_INDEX
        return labels


@dataclass
class DataStats:
    rows_read: int = 0
    samples: int = 0
    context_truncated: int = 0
    dropped_target_too_long: int = 0
    dropped_missing_field: int = 0
    tokens: int = 0
    supervised_tokens: int = 0
    truncated: dict[str, int] = field(default_factory=dict)  # mode -> samples with a cut input
    # Rows another of the run's common_modes cannot use (so no run of the experiment trains on it).
    dropped_not_common: int = 0
    row_ids: list[str] = field(default_factory=list, repr=False)  # ids of the rows used

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("row_ids")
        return data

    def dropped(self) -> dict[str, int]:
        """``{reason: rows}`` of the rows read but not trained on."""
        return {
            "missing_field": self.dropped_missing_field,
            "target_too_long": self.dropped_target_too_long,
            "not_common": self.dropped_not_common,
        }

    def rows_sha256(self) -> str:
        """sha256 hex over the sorted ids of the rows used, one per line: equal digests mean
        two runs trained on the same row set."""
        return hashlib.sha256("\n".join(sorted(self.row_ids)).encode()).hexdigest()


def row_id(row: dict[str, Any]) -> str:
    """A row's stable id: ``triplet_id`` (native exports), ``id``, else the sha256 of the row's
    canonical JSON (sorted keys), which is the same in every export of the same content."""
    for key in ("triplet_id", "id"):
        if row.get(key) not in (None, ""):
            return str(row[key])
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class SampleBuilder:
    """Row → Sample (or None, counted in ``stats``) for one tokenizer, mode and row budget."""

    tokenizer: Any
    max_length: int
    mode: formats.Mode | str = formats.Mode.cgd
    layout: str = "auto"
    stats: DataStats = field(default_factory=DataStats)

    def build(self, row: dict[str, Any]) -> Sample | None:
        self.stats.rows_read += 1
        layout = detect_layout(row) if self.layout == "auto" else self.layout
        if layout == "messages":
            *context, answer = row["messages"]
            assert answer["role"] == "assistant", "the last message must be the assistant target"
            target_text = answer["content"]
        else:
            if formats.missing_field(self.mode, row) is not None:
                self.stats.dropped_missing_field += 1
                return None
            target_text = formats.target(self.mode, row)
            context = [{"role": "user", "content": formats.build_input(self.mode, row)}]
        target_ids = encode_target(self.tokenizer, target_text)
        prompt_ids = self._prompt_ids(context)
        truncated = len(prompt_ids) + len(target_ids) > self.max_length
        if truncated:
            budget = self.max_length - len(target_ids)
            if layout == "messages":
                shortened = self._shorten_messages(context, budget)
            else:
                shortened = self._shorten_native(dict(row), budget)
            if shortened is None:
                self.stats.dropped_target_too_long += 1
                return None
            prompt_ids = shortened
            self.stats.context_truncated += 1
            mode = str(formats.Mode(self.mode).value) if layout != "messages" else str(self.mode)
            self.stats.truncated[mode] = self.stats.truncated.get(mode, 0) + 1
        assert len(prompt_ids) >= 1, "every document must start with a masked token"
        assert len(target_ids) >= 1, "every sample keeps at least one supervised token"
        ids = torch.tensor(prompt_ids + target_ids, dtype=torch.int32)
        self.stats.samples += 1
        self.stats.tokens += ids.numel()
        self.stats.supervised_tokens += len(target_ids)
        return Sample(ids, len(prompt_ids), truncated)

    def _prompt_ids(self, messages: list[Message]) -> list[int]:
        return encode_prompt(self.tokenizer, render_prompt(self.tokenizer, messages))

    def _cut(self, text: str, n_remove: int, keep_tail: bool) -> str:
        """``text`` minus ``n_remove`` tokens (+ slack) from its end, or from its middle."""
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        n_mark = len(self.tokenizer(TRUNCATION_MARK, add_special_tokens=False).input_ids)
        keep = max(0, len(ids) - n_remove - n_mark - _TRUNCATION_SLACK)
        head = keep // 2 if keep_tail else keep
        tail = ids[len(ids) - (keep - head) :] if keep - head > 0 else []
        return str(
            self.tokenizer.decode(ids[:head]) + TRUNCATION_MARK + self.tokenizer.decode(tail)
        )

    def _shorten_native(self, row: dict[str, Any], budget: int) -> list[int] | None:
        """Cut the initial answer, then the critique, then the question until the prompt fits;
        each cut drops the middle of the field (its beginning and its end stay)."""
        prompt_ids = self._prompt_ids(
            [{"role": "user", "content": formats.build_input(self.mode, row)}]
        )
        for name in CONTEXT_FIELDS:
            while len(prompt_ids) > budget and row.get(name) and row[name] != TRUNCATION_MARK:
                row[name] = self._cut(row[name], len(prompt_ids) - budget, keep_tail=True)
                shorter = self._prompt_ids(
                    [{"role": "user", "content": formats.build_input(self.mode, row)}]
                )
                if len(shorter) >= len(prompt_ids):
                    break  # this field is not part of this mode's input
                prompt_ids = shorter
        return prompt_ids if len(prompt_ids) <= budget else None

    def _shorten_messages(self, messages: list[Message], budget: int) -> list[int] | None:
        """Pre-built input: cut the middle of the last user turn (keeps instruction, critique)."""
        messages = [dict(m) for m in messages]
        user = messages[-1]
        prompt_ids = self._prompt_ids(messages)
        while len(prompt_ids) > budget and user["content"] != TRUNCATION_MARK:
            user["content"] = self._cut(user["content"], len(prompt_ids) - budget, keep_tail=True)
            shorter = self._prompt_ids(messages)
            if len(shorter) >= len(prompt_ids):
                break
            prompt_ids = shorter
        return prompt_ids if len(prompt_ids) <= budget else None


class TokenStore(Sequence[Sample]):
    """Tokenized samples kept on disk and memory-mapped, so a large export is never held in RAM.

    ``tokens.i32``: every sample's ids back to back; ``index.npy``: (n, 4) int64 rows of
    (start, length, n_prompt, truncated). Only the samples of the current step are read.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.rows = np.load(directory / "index.npy")  # (n, 4) int64
        size = (directory / "tokens.i32").stat().st_size
        self.tokens = (
            np.memmap(directory / "tokens.i32", dtype=np.int32, mode="r")
            if size
            else np.zeros(0, dtype=np.int32)
        )

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def lengths(self) -> list[int]:
        return [int(n) for n in self.rows[:, 1]]

    def _sample(self, i: int) -> Sample:
        start, length, n_prompt, truncated = (int(v) for v in self.rows[i])
        ids = torch.from_numpy(np.array(self.tokens[start : start + length]))  # (n,) int32 copy
        return Sample(ids, n_prompt, bool(truncated))

    @overload
    def __getitem__(self, i: int) -> Sample: ...
    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...
    def __getitem__(self, i: int | slice) -> Sample | list[Sample]:
        if isinstance(i, slice):
            return [self._sample(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._sample(i)


def tokenize_to_store(
    path: str | Path,
    tokenizer: Any,
    directory: Path,
    *,
    max_length: int,
    mode: formats.Mode | str = formats.Mode.cgd,
    layout: str = "auto",
    limit: int | None = None,
    common_modes: Sequence[formats.Mode | str] | None = None,
) -> tuple[TokenStore, DataStats]:
    """Like :func:`tokenize_export`, streaming the samples into a :class:`TokenStore` on disk:
    memory stays flat whatever the export's size.

    ``common_modes`` (native rows): keep only the rows that every listed mode can use (its
    fields present, its sample buildable within ``max_length``), so the runs of an experiment,
    one per mode, train on the same rows. A pure function of (export, tokenizer, max_length),
    hence the same row set in every mode. ``stats.truncated`` then counts, per listed mode, the
    kept rows whose input that mode had to cut."""
    directory.mkdir(parents=True, exist_ok=True)
    builder = SampleBuilder(tokenizer, max_length, mode, layout)
    own = formats.Mode(mode).value
    others = {
        formats.Mode(m).value: SampleBuilder(tokenizer, max_length, m, layout)
        for m in (common_modes or ())
        if formats.Mode(m).value != own
    }
    truncated = dict.fromkeys([own, *others], 0) if common_modes else {}
    index: list[tuple[int, int, int, int]] = []
    start = 0
    with open(directory / "tokens.i32", "wb") as f:
        for row in itertools.islice(read_jsonl(path), limit):
            other_samples = {m: b.build(row) for m, b in others.items()}
            if any(x is None for x in other_samples.values()):
                builder.stats.rows_read += 1
                builder.stats.dropped_not_common += 1
                continue
            sample = builder.build(row)
            if sample is None:
                continue
            builder.stats.row_ids.append(row_id(row))
            if common_modes:
                for m, x in [(own, sample), *other_samples.items()]:
                    truncated[m] += int(x is not None and x.truncated)
            ids = sample.input_ids.to(torch.int32).numpy()
            f.write(ids.tobytes())
            index.append((start, len(ids), sample.n_prompt, int(sample.truncated)))
            start += len(ids)
    np.save(directory / "index.npy", np.array(index, dtype=np.int64).reshape(-1, 4))
    if common_modes:
        builder.stats.truncated = truncated
    return TokenStore(directory), builder.stats


def tokenize_export(
    path: str | Path,
    tokenizer: Any,
    *,
    max_length: int,
    mode: formats.Mode | str = formats.Mode.cgd,
    layout: str = "auto",
    limit: int | None = None,
) -> tuple[list[Sample], DataStats]:
    """Every usable row of the export as a Sample, with counts of what was cut or dropped."""
    builder = SampleBuilder(tokenizer, max_length, mode, layout)
    samples = []
    for row in itertools.islice(read_jsonl(path), limit):
        sample = builder.build(row)
        if sample is not None:
            samples.append(sample)
    return samples, builder.stats


# -- packing -----------------------------------------------------------------------------------


def pack_rows(
    lengths: list[int], order: list[int], max_length: int, window: int
) -> list[list[int]]:
    """Best-fit-decreasing packing of ``order`` (sample indices) within consecutive windows."""
    rows: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])  # stable
        free: list[tuple[int, int]] = []  # (tokens left, row index), sorted
        for i in chunk:
            k = bisect.bisect_left(free, (lengths[i], -1))  # tightest row that still fits
            if k == len(free):
                rows.append([i])
                bisect.insort(free, (max_length - lengths[i], len(rows) - 1))
            else:
                space, r = free.pop(k)
                rows[r].append(i)
                bisect.insort(free, (space - lengths[i], r))
    return rows


def epoch_rows(
    lengths: list[int], *, seed: int, epoch: int, max_length: int, packing: bool, window: int
) -> list[list[int]]:
    """The rows (lists of sample indices) of one epoch, a pure function of (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    if not packing:
        return [[i] for i in order]
    rows = pack_rows(lengths, order, max_length, window)
    return [rows[j] for j in torch.randperm(len(rows), generator=g).tolist()]


SUPERVISED_PAD = 128  # supervised positions are padded to a multiple of this (few loss shapes)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (b, t) int64
    position_ids: torch.Tensor  # (b, t) restarting at 0 for every document (and the padding)
    targets: torch.Tensor  # (b, t) next token at supervised positions, -100 elsewhere
    cu_seqlens: list[torch.Tensor]  # per row: document boundaries [0, l1, l1 + l2, …, t]
    n_tokens: int  # real (non-pad) tokens
    n_supervised: int
    # The micro-batch flattened to one sequence of b·t tokens (what packed attention reads):
    packed_cu_seqlens: torch.Tensor  # (n_docs + 1,) int32, padded by repeating the last entry
    supervised_index: torch.Tensor  # (n_pad,) int64 flat positions b·t of supervised tokens
    supervised_targets: torch.Tensor  # (n_pad,) their targets, -100 on the padding entries

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return Batch(
            move(self.input_ids),
            move(self.position_ids),
            move(self.targets),
            self.cu_seqlens,
            self.n_tokens,
            self.n_supervised,
            move(self.packed_cu_seqlens),
            move(self.supervised_index),
            move(self.supervised_targets),
        )

    def pin_memory(self) -> Batch:
        """Page-locked copies, so ``to(cuda, non_blocking=True)`` is a real async copy."""

        def pin(t: torch.Tensor) -> torch.Tensor:
            return t.pin_memory()

        return Batch(
            pin(self.input_ids),
            pin(self.position_ids),
            pin(self.targets),
            self.cu_seqlens,
            self.n_tokens,
            self.n_supervised,
            pin(self.packed_cu_seqlens),
            pin(self.supervised_index),
            pin(self.supervised_targets),
        )


def collate(
    rows: list[list[Sample]], pad_id: int, width: int | None = None, n_docs: int | None = None
) -> Batch:
    """Concatenate each row's samples; pad rows as one extra pseudo-document.

    ``width``: row length (default: the longest row); ``n_docs``: pad the flattened boundaries
    to this many documents. Both fixed → every micro-batch has the same shapes.
    """
    width = width or max(1, *(sum(len(s) for s in row) for row in rows))
    ids, pos, tgt, cu = [], [], [], []
    for row in rows:
        lens = [len(s) for s in row]
        pad = width - sum(lens)
        assert pad >= 0, "a row is longer than the row width"
        ids.append(torch.cat([*(s.input_ids.long() for s in row), torch.full((pad,), pad_id)]))
        pos.append(torch.cat([torch.arange(n) for n in [*lens, pad]]))
        labels = torch.cat([*(s.labels() for s in row), torch.full((pad,), IGNORE_INDEX)])
        # Position j predicts token j + 1. Each document starts with a masked prompt token, so
        # the shift never asks one document to predict the next one.
        tgt.append(torch.cat([labels[1:], torch.tensor([IGNORE_INDEX])]))
        cu.append(torch.tensor([0, *itertools.accumulate([*lens, pad] if pad else lens)]))
    targets = torch.stack(tgt)  # (b, t)
    # Row r's boundaries shifted by r · width; the flattened sequence is rows back to back.
    flat_cu = torch.cat([cu[0], *(c[1:] + r * width for r, c in enumerate(cu[1:], 1))])
    if n_docs is not None:
        assert flat_cu.numel() <= n_docs + 1, (flat_cu.numel(), n_docs)
        flat_cu = torch.cat([flat_cu, flat_cu[-1:].expand(n_docs + 1 - flat_cu.numel())])
    flat_targets = targets.flatten()
    index = (flat_targets != IGNORE_INDEX).nonzero().squeeze(1)  # (n,) on the host: no sync
    n_pad = -index.numel() % SUPERVISED_PAD
    return Batch(
        input_ids=torch.stack(ids),
        position_ids=torch.stack(pos),
        targets=targets,
        cu_seqlens=cu,
        n_tokens=sum(len(s) for row in rows for s in row),
        n_supervised=index.numel(),
        packed_cu_seqlens=flat_cu.to(torch.int32),
        supervised_index=torch.cat([index, torch.zeros(n_pad, dtype=torch.long)]),
        supervised_targets=torch.cat(
            [flat_targets[index], torch.full((n_pad,), IGNORE_INDEX, dtype=torch.long)]
        ),
    )


class StepLoader:
    """Global optimizer step → this rank's micro-batches; the data position is the step.

    Two batch units. ``tokens`` (``rows_per_step`` given): a step takes ``rows_per_step``
    consecutive rows of the epoch plan (the last step of an epoch wraps around to the epoch's
    first rows, as DistributedSampler does). ``samples`` (``samples_per_step`` given): a step
    takes the next ``samples_per_step`` samples of the epoch's permutation (the last step takes
    what is left) and packs them into rows, so every training format makes the same number of
    steps on the same triplets. Either way the step's rows are padded with empty rows to a
    multiple of world_size × micro_batch_rows (every rank runs the same number of micro-batches)
    and rank r takes rows r, r + world, …

    ``fixed_shapes``: rows padded to ``max_length`` and boundaries to a fixed document count, so
    every micro-batch of the run has the same tensor shapes (torch.compile keeps its graphs).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        rows_per_step: int = 0,
        micro_batch_rows: int,
        max_length: int,
        packing: bool,
        pack_window: int,
        seed: int,
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
        samples_per_step: int | None = None,
        fixed_shapes: bool = False,
    ) -> None:
        assert samples, "no usable samples in the export"
        assert samples_per_step or rows_per_step % (world_size * micro_batch_rows) == 0
        self.samples = samples
        if isinstance(samples, TokenStore):
            self.lengths = samples.lengths
            self.n_prompts = [int(n) for n in samples.rows[:, 2]]
        else:
            self.lengths = [len(s) for s in samples]
            self.n_prompts = [s.n_prompt for s in samples]
        self.rows_per_step = rows_per_step
        self.samples_per_step = samples_per_step
        self.micro_batch_rows = micro_batch_rows
        self.max_length = max_length
        self.packing = packing
        self.pack_window = pack_window
        self.seed = seed
        self.pad_id = pad_id
        self.rank = rank
        self.world_size = world_size
        self.fixed_shapes = fixed_shapes
        # Documents per row are bounded by the shortest sample (+ the padding pseudo-document).
        self.docs_per_row = (max_length // min(self.lengths) + 1) if packing else 2
        self.next_step = 0
        self.epoch_plan = lru_cache(maxsize=2)(self._epoch_plan)
        self._steps_in_epoch: dict[int, int] = {}

    def _epoch_plan(self, epoch: int) -> list[list[int]]:
        if self.samples_per_step:  # a plan of one-sample "rows": the epoch's permutation
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            return [[i] for i in torch.randperm(len(self.lengths), generator=g).tolist()]
        return epoch_rows(
            self.lengths,
            seed=self.seed,
            epoch=epoch,
            max_length=self.max_length,
            packing=self.packing,
            window=self.pack_window,
        )

    def steps_in_epoch(self, epoch: int) -> int:
        if epoch not in self._steps_in_epoch:  # cached: plans are cached for two epochs only
            per_step = self.samples_per_step or self.rows_per_step
            self._steps_in_epoch[epoch] = math.ceil(len(self.epoch_plan(epoch)) / per_step)
        return self._steps_in_epoch[epoch]

    def total_steps(self, epochs: int) -> int:
        return sum(self.steps_in_epoch(e) for e in range(epochs))

    def locate(self, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) of a global step."""
        epoch = 0
        while step >= (n := self.steps_in_epoch(epoch)):
            step, epoch = step - n, epoch + 1
        return epoch, step

    def step_rows(self, step: int) -> list[list[int]]:
        """Every row (sample indices) of a global step, over all ranks; empty rows pad."""
        epoch, k = self.locate(step)
        plan = self.epoch_plan(epoch)
        if self.samples_per_step:
            chosen = [row[0] for row in plan[k * self.samples_per_step :][: self.samples_per_step]]
            rows = (
                pack_rows(self.lengths, chosen, self.max_length, len(chosen))
                if self.packing
                else [[i] for i in chosen]
            )
        else:
            rows = [
                plan[(k * self.rows_per_step + j) % len(plan)] for j in range(self.rows_per_step)
            ]
        unit = self.world_size * self.micro_batch_rows
        return rows + [[] for _ in range(-len(rows) % unit)]

    def step_counts(self, step: int) -> dict[str, int]:
        """Samples, real tokens and supervised tokens of a step over all ranks, from the index
        alone: every rank knows the global loss denominator without a collective."""
        idx = [i for row in self.step_rows(step) for i in row]
        return {
            "samples": len(idx),
            "tokens": sum(self.lengths[i] for i in idx),
            # Targets are labels shifted by one; a sample's first (masked) token predicts nothing.
            "supervised_tokens": sum(self.lengths[i] - self.n_prompts[i] for i in idx),
        }

    def micro_batches(self, step: int) -> list[Batch]:
        mine = self.step_rows(step)[self.rank :: self.world_size]
        rows = [[self.samples[i] for i in row] for row in mine]
        width = self.max_length if self.fixed_shapes else None
        n_docs = self.micro_batch_rows * self.docs_per_row if self.fixed_shapes else None
        return [
            collate(rows[j : j + self.micro_batch_rows], self.pad_id, width, n_docs)
            for j in range(0, len(rows), self.micro_batch_rows)
        ]

    def __iter__(self) -> Iterator[tuple[int, list[Batch]]]:
        while True:
            step = self.next_step
            batches = self.micro_batches(step)
            self.next_step += 1
            yield step, batches

    def state_dict(self) -> dict[str, int]:
        epoch, k = self.locate(self.next_step)
        return {
            "next_step": self.next_step,
            "epoch": epoch,
            "step_in_epoch": k,
            "seed": self.seed,
            "n_samples": len(self.samples),
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        assert state["seed"] == self.seed and state["n_samples"] == len(self.samples), (
            "resuming on different data (seed or sample count changed)"
        )
        self.next_step = state["next_step"]


class Prefetcher:
    """Builds the micro-batches of the next steps in a background thread, in pinned memory.

    Collation is Python and numpy work that mostly releases the GIL in torch ops; with two steps
    queued it overlaps the GPU's work on the current step. The recipe owns the step counter.
    """

    def __init__(self, loader: StepLoader, start_step: int, *, pin: bool, depth: int = 2) -> None:
        self.loader, self.pin = loader, pin
        self.queue: queue.Queue[tuple[int, list[Batch]] | BaseException] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(start_step,), daemon=True)
        self._thread.start()

    def _work(self, step: int) -> None:
        try:
            while not self._stop.is_set():
                batches = self.loader.micro_batches(step)
                if self.pin:
                    batches = [b.pin_memory() for b in batches]
                while not self._stop.is_set():
                    try:
                        self.queue.put((step, batches), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                step += 1
        except BaseException as exc:  # surfaced in the training thread
            self.queue.put(exc)

    def next(self) -> tuple[int, list[Batch]]:
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
