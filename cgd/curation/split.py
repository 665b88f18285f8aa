"""Deterministic train/val split by a hash of (seed, normalised prompt).

Hashing the prompt, not the triplet, keeps every sample of a prompt (and identical prompts of
other items, when dedup is off) on the same side, so val never sees a prompt train has seen.
A hash rather than a shuffle: adding rows to a snapshot spec never moves existing prompts across.
The val share is therefore ``val_fraction`` in expectation, not exactly.
"""

from __future__ import annotations

import hashlib

from cgd.curation.text import normalise_prompt

# The Hub's split names. Rows stored before the rename say "val": read them with ``split_name``.
TRAIN, VAL = "train", "validation"


def split_name(stored: str | None) -> str:
    """The split of a row as exports name it (absent = train, the old ``val`` = validation)."""
    if not stored:
        return TRAIN
    return VAL if stored == "val" else stored


def split_of(prompt: str, val_fraction: float, seed: int = 0) -> str:
    """``"validation"`` for about ``val_fraction`` of prompts, ``"train"`` for the rest."""
    if val_fraction <= 0:
        return TRAIN
    if val_fraction >= 1:
        return VAL
    digest = hashlib.sha256(f"{seed}\x00{normalise_prompt(prompt)}".encode()).digest()
    # Uniform in [0, 1) from the first 8 bytes.
    u = int.from_bytes(digest[:8], "big") / 2**64
    return VAL if u < val_fraction else TRAIN
