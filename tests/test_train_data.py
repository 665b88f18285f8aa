"""Trainer data: masking token by token, over-long handling, packing, exact data position."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from cgd.curation import formats  # noqa: E402
from cgd.train.data import (  # noqa: E402
    IGNORE_INDEX,
    TRUNCATION_MARK,
    SampleBuilder,
    StepLoader,
    collate,
    encode_target,
    epoch_rows,
    render_prompt,
    tokenize_export,
)
from cgd.train.model import load_tokenizer  # noqa: E402
from cgd.train.tiny import make_tiny_model, synthetic_rows, write_synthetic_export  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return load_tokenizer(str(make_tiny_model(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture(scope="module")
def base_tok(tmp_path_factory):
    path = make_tiny_model(tmp_path_factory.mktemp("tiny_base"), chat_template=False)
    return load_tokenizer(str(path))


def test_masking_is_exact_token_by_token(tok):
    row = synthetic_rows(1)[0]
    sample = SampleBuilder(tok, max_length=4096).build(row)
    user = formats.build_input("cgd", row)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    target_ids = tok(row["refined_response"], add_special_tokens=False).input_ids
    expected = prompt_ids + target_ids + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert sample.input_ids.tolist() == expected
    labels = sample.labels().tolist()
    assert labels == [IGNORE_INDEX] * len(prompt_ids) + target_ids + [tok.eos_token_id]
    # The supervised tokens decode to exactly the refined answer + end of turn.
    assert (
        tok.decode([t for t in labels if t != IGNORE_INDEX])
        == row["refined_response"] + "<|im_end|>"
    )
    # The chat template with the answer as assistant turn starts with the same tokens.
    full = tok.apply_chat_template(
        [
            {"role": "user", "content": user},
            {"role": "assistant", "content": row["refined_response"]},
        ],
        tokenize=False,
    )
    assert tok(full, add_special_tokens=False).input_ids[: len(expected)] == expected


def test_messages_layout_equals_native_cgd(tok, tmp_path):
    native = write_synthetic_export(tmp_path / "n.jsonl", 5)
    messages = write_synthetic_export(tmp_path / "m.jsonl", 5, layout="messages")
    a, _ = tokenize_export(native, tok, max_length=4096, mode="cgd")
    b, _ = tokenize_export(messages, tok, max_length=4096)
    assert [s.input_ids.tolist() for s in a] == [s.input_ids.tolist() for s in b]
    assert [s.n_prompt for s in a] == [s.n_prompt for s in b]


def test_plain_prompt_without_chat_template(base_tok):
    assert not base_tok.chat_template
    text = render_prompt(base_tok, [{"role": "user", "content": "What is 2 + 2?"}])
    assert text == "Question: What is 2 + 2?\n\nAnswer:"
    sample = SampleBuilder(base_tok, 4096, mode="sft").build(synthetic_rows(1)[0])
    target = sample.input_ids[sample.n_prompt :].tolist()
    # The bare reference gets its box (issue 12: every target ends in \\boxed{}).
    reference = synthetic_rows(1)[0]["reference"]
    assert target == encode_target(base_tok, f"\\boxed{{{reference}}}")
    assert target[-1] == base_tok.eos_token_id == base_tok.convert_tokens_to_ids("<|endoftext|>")


def test_every_mode_keeps_supervised_tokens(tok):
    # A job run with teacher_solution, so that distill has its target.
    row = {**synthetic_rows(1)[0], "teacher_solution": "We add: \\boxed{3}."}
    for mode in formats.MODES:
        sample = SampleBuilder(tok, 4096, mode=mode).build(row)
        n_sup = int((sample.labels() != IGNORE_INDEX).sum())
        assert n_sup == len(encode_target(tok, formats.target(mode, row))) >= 1


def test_overlong_cuts_context_in_order_and_never_the_target(tok):
    row = dict(synthetic_rows(1)[0])
    row["initial_response"] = "the student rambles on and on. " * 200
    row["critique"] = "the teacher explains at length. " * 200
    target_ids = encode_target(tok, row["refined_response"])
    builder = SampleBuilder(tok, max_length=400)
    full = builder._prompt_ids([{"role": "user", "content": formats.build_input("cgd", row)}])
    assert len(full) + len(target_ids) > 400

    sample = builder.build(row)
    assert sample is not None and sample.truncated and len(sample) <= 400
    assert sample.input_ids[sample.n_prompt :].tolist() == target_ids  # target intact
    text = tok.decode(sample.input_ids[: sample.n_prompt].tolist())
    # The initial answer went first: it is (almost) all gone, the critique is partly kept.
    assert text.count("rambles") < 3 and text.count("teacher explains") > 3
    assert TRUNCATION_MARK in text and row["prompt"] in text
    assert builder.stats.context_truncated == 1 and builder.stats.dropped_target_too_long == 0

    # Tighter still: the critique goes too, the question survives.
    small = SampleBuilder(tok, max_length=len(target_ids) + 115).build(row)
    assert small is not None
    text = tok.decode(small.input_ids[: small.n_prompt].tolist())
    assert text.count("teacher explains") <= 1 and row["prompt"] in text


def test_target_too_long_is_dropped_and_counted(tok, tmp_path):
    rows = synthetic_rows(4)
    rows[1]["refined_response"] = "a very long refined answer. " * 300
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples, stats = tokenize_export(path, tok, max_length=256)
    assert len(samples) == 3 and stats.dropped_target_too_long == 1 and stats.rows_read == 4
    assert all(int((s.labels() != IGNORE_INDEX).sum()) >= 1 for s in samples)


def test_packing_positions_targets_and_boundaries(tok, tmp_path):
    samples, _ = tokenize_export(
        write_synthetic_export(tmp_path / "x.jsonl", 6), tok, max_length=512
    )
    row = samples[:3]
    batch = collate([row, samples[3:4]], pad_id=tok.pad_token_id)
    lens = [len(s) for s in row]
    assert batch.input_ids.shape == (2, sum(lens))
    assert batch.cu_seqlens[0].tolist() == [0, lens[0], lens[0] + lens[1], sum(lens)]
    assert batch.position_ids[0].tolist() == [p for n in lens for p in range(n)]
    pad = sum(lens) - len(samples[3])
    assert batch.position_ids[1, len(samples[3]) :].tolist() == list(range(pad))
    # Targets: exactly the next supervised token, nothing across a document boundary.
    start = 0
    for s in row:
        labels = s.labels()
        assert batch.targets[0, start : start + len(s) - 1].tolist() == labels[1:].tolist()
        assert batch.targets[0, start + len(s) - 1] == IGNORE_INDEX
        start += len(s)
    assert batch.n_supervised == sum(int((s.labels() != IGNORE_INDEX).sum()) for s in samples[:4])
    assert batch.n_tokens == sum(len(s) for s in samples[:4])


def test_epoch_plan_is_deterministic_complete_and_fits():
    lengths = [
        int(x) for x in torch.randint(20, 300, (500,), generator=torch.Generator().manual_seed(1))
    ]
    a = epoch_rows(lengths, seed=3, epoch=0, max_length=512, packing=True, window=64)
    assert a == epoch_rows(lengths, seed=3, epoch=0, max_length=512, packing=True, window=64)
    assert a != epoch_rows(lengths, seed=3, epoch=1, max_length=512, packing=True, window=64)
    assert sorted(i for row in a for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 512 for row in a)
    fill = sum(lengths) / (512 * len(a))
    assert fill > 0.9, fill


def test_loader_position_resumes_exactly(tok, tmp_path):
    samples, _ = tokenize_export(
        write_synthetic_export(tmp_path / "x.jsonl", 40), tok, max_length=256
    )
    kw = dict(rows_per_step=4, micro_batch_rows=2, max_length=256, packing=True, pack_window=16,
              seed=0, pad_id=tok.pad_token_id)  # fmt: skip
    a = StepLoader(samples, **kw)
    it = iter(a)
    for _ in range(3):
        next(it)
    state = a.state_dict()
    b = StepLoader(samples, **kw)
    b.load_state_dict(state)
    for (sa, ba), (sb, bb) in zip(_take(it, 6), _take(iter(b), 6), strict=True):
        assert sa == sb and len(ba) == len(bb) == 2
        for x, y in zip(ba, bb, strict=True):
            assert torch.equal(x.input_ids, y.input_ids) and torch.equal(x.targets, y.targets)
    # Two ranks split each step's rows without overlap.
    r0 = StepLoader(samples, **{**kw, "micro_batch_rows": 1}, rank=0, world_size=2)
    r1 = StepLoader(samples, **{**kw, "micro_batch_rows": 1}, rank=1, world_size=2)
    one = StepLoader(samples, **{**kw, "micro_batch_rows": 1})
    for step in range(4):
        split = r0.micro_batches(step) + r1.micro_batches(step)
        whole = one.micro_batches(step)
        assert sorted(b.input_ids.tolist() for b in split) == sorted(
            b.input_ids.tolist() for b in whole
        )


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_token_store_matches_in_memory_samples(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The disk-backed store the trainer uses yields exactly the in-memory samples."""
    from cgd.train.data import TokenStore, tokenize_to_store

    model = tmp_path / "m"
    make_tiny_model(model)
    tok = load_tokenizer(model)
    export = write_synthetic_export(tmp_path / "x.jsonl", 12)
    ref, ref_stats = tokenize_export(export, tok, max_length=256)
    store, stats = tokenize_to_store(export, tok, tmp_path / "tokens", max_length=256)
    assert stats.as_dict() == ref_stats.as_dict()
    assert len(store) == len(ref) and store.lengths == [len(s) for s in ref]
    for a, b in zip(ref, store, strict=True):
        assert a.input_ids.tolist() == b.input_ids.tolist()
        assert (a.n_prompt, a.truncated) == (b.n_prompt, b.truncated)
    assert [s.n_prompt for s in store[2:5]] == [s.n_prompt for s in ref[2:5]]
    assert store[-1].input_ids.tolist() == ref[-1].input_ids.tolist()
    reopened = TokenStore(tmp_path / "tokens")  # what a resumed run reads
    assert reopened[3].input_ids.tolist() == ref[3].input_ids.tolist()


def test_cut_keeps_the_beginning_and_the_end_of_the_student_answer(tok):
    # Issue 23, departure 3: the end of a student answer holds its final answer (what the
    # critique discusses); cutting it off lost exactly that. The middle goes instead.
    row = dict(synthetic_rows(1)[0])
    row["initial_response"] = (
        "first we set up the equation. " + "the student rambles on and on. " * 200 + "so 42"
    )
    builder = SampleBuilder(tok, max_length=400)
    sample = builder.build(row)
    assert sample is not None and sample.truncated
    text = tok.decode(sample.input_ids[: sample.n_prompt].tolist())
    assert "first we set up" in text  # the beginning
    assert "so 42" in text  # the end (failed before: only the beginning was kept)
    assert "[…]" in text and TRUNCATION_MARK.startswith("\n")  # a visible marker
    assert builder.stats.truncated == {"cgd": 1}
    assert builder.stats.as_dict()["truncated"] == {"cgd": 1}
