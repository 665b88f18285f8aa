"""N-gram decontamination of training prompts against eval sets (and any other texts).

A prompt is contaminated by a source (an eval set, another dataset) when
- it shares a word n-gram (default 13, over lowercased word tokens) with one of its texts, or
- it is shorter than n words and equals one of its texts, or
- one of its texts is shorter than n words (and at least ``MIN_SPAN`` long) and appears in the
  prompt as a contiguous run of words: 51 MATH-500 problems ("Compute $\\dbinom{31}{28}$.") are
  too short to ever produce a 13-gram, and they are the likeliest ones to be copied.

Grams are hashed to 64-bit ints and kept per source as a sorted numpy array (8 bytes per gram) so
an index over another dataset's 100k prompts stays small.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from cgd.curation.eval_sets import load_eval_set
from cgd.curation.text import word_tokens

DEFAULT_NGRAM = 13
# Shorter texts are only matched whole: inside a longer prompt, "Solve for x" is no evidence.
# Two MATH-500 problems are shorter ("Simplify $\\sqrt{242}$."): those are caught only verbatim.
MIN_SPAN = 4
_MASK = (1 << 64) - 1


@lru_cache(maxsize=1 << 18)
def _token_id(token: str) -> int:
    # Stable across processes (unlike hash(str)), so a rerun makes the same decisions.
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def _span_hash(ids: list[int] | tuple[int, ...]) -> int:
    # hash() of a tuple of ints is deterministic (no per-process salt, unlike str).
    return hash(tuple(ids)) & _MASK


def _ids(text: str) -> list[int]:
    return [_token_id(t) for t in word_tokens(text)]


class _Source:
    def __init__(self) -> None:
        self.pending = array("Q")
        self.grams = np.empty(0, dtype=np.uint64)
        self.whole: set[int] = set()  # hashes of texts shorter than n (equality and containment)
        self.short_starts: dict[int, set[int]] = {}  # first token id -> lengths of short texts

    def sorted_grams(self) -> np.ndarray:
        if self.pending:
            merged = np.concatenate([self.grams, np.frombuffer(self.pending, dtype=np.uint64)])
            self.grams = np.unique(merged)
            self.pending = array("Q")
        return self.grams


class NgramIndex:
    """Word n-gram index of several labelled text sources."""

    def __init__(self, n: int = DEFAULT_NGRAM) -> None:
        self.n = n
        self._sources: dict[str, _Source] = {}

    def add(self, label: str, texts: Iterable[str]) -> None:
        src = self._sources.setdefault(label, _Source())
        n = self.n
        for text in texts:
            ids = _ids(text or "")
            if not ids:
                continue
            if len(ids) < n:
                src.whole.add(_span_hash(ids))
                if len(ids) >= MIN_SPAN:
                    src.short_starts.setdefault(ids[0], set()).add(len(ids))
                continue
            src.pending.extend(_span_hash(ids[i : i + n]) for i in range(len(ids) - n + 1))

    def matches(self, text: str) -> list[str]:
        """Labels of the sources that contaminate ``text`` (empty: clean)."""
        ids = _ids(text or "")
        if not ids:
            return []
        n = self.n
        if len(ids) >= n:
            grams = np.fromiter(
                (_span_hash(ids[i : i + n]) for i in range(len(ids) - n + 1)),
                dtype=np.uint64,
                count=len(ids) - n + 1,
            )
        else:
            grams = None
        whole = _span_hash(ids)
        hits = []
        for label, src in self._sources.items():
            long_hit = grams is not None and _any_in(grams, src.sorted_grams())
            if long_hit or whole in src.whole or _contains_short(ids, src):
                hits.append(label)
        return hits


def _any_in(query: np.ndarray, sorted_index: np.ndarray) -> bool:
    if sorted_index.size == 0:
        return False
    pos = np.searchsorted(sorted_index, query)
    pos[pos == sorted_index.size] = sorted_index.size - 1
    return bool((sorted_index[pos] == query).any())


def _contains_short(ids: list[int], src: _Source) -> bool:
    if not src.short_starts:
        return False
    for i, tok in enumerate(ids):
        lengths = src.short_starts.get(tok)
        if lengths is None:
            continue
        for length in lengths:
            if i + length <= len(ids) and _span_hash(ids[i : i + length]) in src.whole:
                return True
    return False


def build_index(
    sets: Iterable[str] = (),
    extra_texts: dict[str, Iterable[str]] | None = None,
    n: int = DEFAULT_NGRAM,
) -> NgramIndex:
    """An index over the named bundled eval sets plus ``extra_texts`` (label -> texts)."""
    index = NgramIndex(n)
    for name in sets:
        index.add(name, (row["problem"] for row in load_eval_set(name)))
    for label, texts in (extra_texts or {}).items():
        index.add(label, texts)
    return index
