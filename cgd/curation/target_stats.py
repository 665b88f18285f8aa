"""What each mode's targets are made of, counted over a snapshot's rows for its dataset card.

``{"<mode>": {"rows": n, "kept": n, "hashes": n, ...}, "sft_source": {"solution": n,
"reference": n, "bare_answer": n}}``: how many targets already had a ``\\boxed{}`` answer and how
many had one added (``cgd.curation.targets``), and whether sft trains on worked solutions or on
bare answers (the card warns about the latter: the student would learn to answer without
reasoning).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from cgd.curation.formats import ANSWER_MODES, Mode, missing_field, target_with_note
from cgd.curation.targets import is_bare_answer


class TargetStats:
    def __init__(self) -> None:
        self.modes: dict[str, Counter[str]] = {m.value: Counter() for m in ANSWER_MODES}
        self.sft_source: Counter[str] = Counter()

    def observe(self, t: Mapping[str, Any]) -> None:
        for mode in ANSWER_MODES:
            if missing_field(mode, t) is not None:
                continue
            _, note = target_with_note(mode, t)
            counts = self.modes[mode.value]
            counts["rows"] += 1
            counts[note] += 1
            if mode == Mode.sft:
                self.sft_source[self._sft_source(t)] += 1

    @staticmethod
    def _sft_source(t: Mapping[str, Any]) -> str:
        solution = t.get("solution")
        text = str(solution if solution else t.get("reference"))
        if is_bare_answer(text):
            return "bare_answer"
        return "solution" if solution else "reference"

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: dict(sorted(c.items())) for m, c in self.modes.items()}
        out["sft_source"] = dict(sorted(self.sft_source.items()))
        return out
