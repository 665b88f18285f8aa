"""A tiny random-init causal LM with a freshly trained tokenizer, for tests and dev runs.

Written with ``save_pretrained`` so everything downstream loads it through the real
``from_pretrained`` path. No network: the byte-level BPE tokenizer is trained on a built-in corpus
(or on text the caller passes), so any UTF-8 input still encodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

# ChatML, as Qwen2.5-Instruct renders it (without the default system prompt).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

BUILTIN_CORPUS = r"""
Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips
in May. How many clips did Natalia sell altogether in April and May?
Answer: In May she sold 48 / 2 = 24 clips. Altogether she sold 48 + 24 = 72 clips. The answer is
\boxed{72}.
Critique: The student's first step is correct, but the final sum is wrong: 48 + 24 is 72, not 62.
Conclusion: wrong
Let $x$ be the number of apples. Then $2x + 3 = 11$, so $2x = 8$ and $x = 4$. Therefore the final
answer is $\boxed{4}$. We compute $\frac{14}{3}$ and $\sqrt{2}$, then $\left( 3, \frac{\pi}{2}
\right)$ in polar coordinates. The sum of the angles of a triangle is $180^\circ$.
Please reason step by step, and put your final answer within \boxed{}.
Below are a question, a student's initial answer and a teacher's critique of it. Using the initial
answer and the critique, write an improved, complete answer to the question.
Student's Initial Answer: The speed is 18 miles per hour, the time is 1.5 hours, so the distance
is 27 miles. Critique: Each step is justified and the arithmetic is right. Conclusion: right
0 1 2 3 4 5 6 7 8 9 10 12 15 20 24 25 27 30 36 42 45 48 50 60 64 72 81 90 99 100 128 144 1000
The probability is $\frac{1}{6}$. The area is $\pi r^2 = 9\pi$. If $a^2 + b^2 = c^2$ then the
triangle is right-angled. Simplify: $(x+1)(x-1) = x^2 - 1$. The remainder when 2023 is divided by 7
is 0 because 2023 = 7 * 289. Hence the answer is 0.
"""


def train_tokenizer(
    text: str, vocab_size: int = 512, chat_template: bool = True
) -> PreTrainedTokenizerFast:
    """A byte-level BPE fast tokenizer trained on ``text`` (ids 0..2 are the special tokens)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    if chat_template:
        fast.chat_template = CHATML_TEMPLATE
    return fast


def make_tiny_model(
    path: str | Path,
    *,
    arch: Literal["qwen2", "llama"] = "qwen2",
    chat_template: bool = True,
    corpus_text: str | None = None,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny random-init causal LM + tokenizer to ``path`` and return the path.

    ``chat_template=False`` gives a "base model" tokenizer (no chat template, eos =
    ``<|endoftext|>``), which exercises the plain "Question: …\\n\\nAnswer:" prompt path.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(corpus_text or BUILTIN_CORPUS, vocab_size, chat_template)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = Qwen2Config(**common) if arch == "qwen2" else LlamaConfig(**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def synthetic_rows(n_rows: int, seed: int = 0) -> list[dict[str, str]]:
    """Native CGD rows with learnable structure (small sums), lengths varying with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n_rows):
        a, b, pad = (int(v) for v in torch.randint(1, 50, (3,), generator=g))
        wrong = a + b + 1 + i % 3
        steps = " ".join(f"Step {k}: we add the numbers." for k in range(pad % 7))
        rows.append(
            {
                "id": f"syn-{i}",
                "prompt": f"What is {a} + {b}?",
                "initial_response": f"{steps} {a} + {b} = {wrong}. The answer is {wrong}.",
                "critique": f"The sum is wrong: {a} + {b} is not {wrong}. Conclusion: wrong",
                "refined_response": f"We add {a} and {b}: {a} + {b} = {a + b}. "
                f"The answer is \\boxed{{{a + b}}}.",
                "reference": str(a + b),
            }
        )
    return rows


def write_synthetic_export(
    path: str | Path,
    n_rows: int,
    *,
    layout: Literal["native", "messages"] = "native",
    seed: int = 0,
) -> Path:
    """A JSONL export of ``synthetic_rows``, native or pre-built `messages` (mode cgd)."""
    from cgd.curation import formats

    path = Path(path)
    with path.open("w") as f:
        for row in synthetic_rows(n_rows, seed):
            if layout == "messages":
                user = {"role": "user", "content": formats.build_input("cgd", row)}
                answer = {"role": "assistant", "content": formats.target("cgd", row)}
                f.write(json.dumps({"messages": [user, answer]}) + "\n")
            else:
                f.write(json.dumps(row) + "\n")
    return path
