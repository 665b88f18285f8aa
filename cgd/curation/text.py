"""Text normalisation shared by dedup, decontamination and the train/val split.

One definition, so "the same prompt" means the same thing for all three.
"""

from __future__ import annotations

import hashlib
import re
import string

_WS_RE = re.compile(r"\s+")
# Unicode word characters: LaTeX commands lose their backslash (`\frac` -> `frac`), `$45$` -> `45`.
_WORD_RE = re.compile(r"\w+")
_EDGE_PUNCT = string.punctuation + "\u2018\u2019\u201c\u201d\u2026"


def normalise_prompt(text: str) -> str:
    """Lowercase, whitespace collapsed to single spaces, punctuation stripped from both ends."""
    return _WS_RE.sub(" ", text.lower()).strip().strip(_EDGE_PUNCT).strip()


def prompt_key(text: str) -> str:
    """A short stable key of the normalised prompt (exact dedup, split grouping)."""
    return hashlib.sha256(normalise_prompt(text).encode()).hexdigest()[:32]


def word_tokens(text: str) -> list[str]:
    """Lowercased word tokens (n-gram decontamination, MinHash shingles)."""
    return _WORD_RE.findall(text.lower())
