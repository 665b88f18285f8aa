"""What a prompt template is and how one is rendered safely.

A template is five texts in a small subset of Jinja: the system prompt of the critique
conversation, the critique request (``question``, ``answer``), the refine turn (``question``,
``answer``, ``critique``), and the system prompt and request of the optional ``teacher_solution``
call (``question``). Teams bring their own over the API, and a deployment's teams do not trust
each other, so every template is rendered by Jinja's ``SandboxedEnvironment`` *and* limited to
output expressions, ``if`` blocks, ``~`` and a few string filters: no loops, calls, macros,
includes or arithmetic, so rendering stays linear in the size of the question and answers and
cannot reach Python objects.

Refine is a *continuation* of the critique conversation: its messages are the critique
request's messages, the critique itself as the assistant turn, and one short user turn. The
teacher server's prefix cache then serves everything but that last turn. The system prompt is
rendered without variables so that prefix is the same for every item.
"""

from __future__ import annotations

import copy
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

Message = dict[str, str]

# The verdict lines `parse_verdict` reads; a critique prompt must ask for both, verbatim.
VERDICT_LINES = ("Conclusion: right", "Conclusion: wrong")
MAX_SOURCE_CHARS = 20_000

# Which variables each part may use, and which it must use (a critique that never shows the
# student's answer is a mistake, not a choice).
PART_VARIABLES: dict[str, tuple[str, ...]] = {
    "system": (),
    "critique": ("question", "answer"),
    "refine": ("question", "answer", "critique"),
    "solve_system": (),
    "solve": ("question",),
}
REQUIRED_VARIABLES: dict[str, tuple[str, ...]] = {
    "critique": ("question", "answer"),
    "solve": ("question",),
}
_ALLOWED_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.If,
    nodes.Filter,
    nodes.Test,
    nodes.Compare,
    nodes.Operand,
    nodes.Not,
    nodes.And,
    nodes.Or,
    nodes.Concat,
    nodes.CondExpr,
)
_ALLOWED_FILTERS = frozenset({"trim", "lower", "upper", "capitalize"})
_ALLOWED_TESTS = frozenset({"defined", "none", "string"})

_ENV = SandboxedEnvironment(
    autoescape=False,
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    auto_reload=False,
)
# No globals: templates call nothing (Call nodes are refused), so a global could only print a
# Python object's repr into a prompt (`{{ lipsum }}` sent `<function generate_lorem_ipsum …>`).
# Cleared, every such name is an unknown variable and refused at creation.
_ENV.globals.clear()


class TemplateSourceError(ValueError):
    """A template text that cannot be used; ``part`` says which text."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


@dataclass(frozen=True)
class TemplateSources:
    system: str
    critique: str
    refine: str
    solve_system: str
    solve: str

    def as_dict(self) -> dict[str, str]:
        return {p: getattr(self, p) for p in PART_VARIABLES}


def _check_nodes(part: str, ast: nodes.Template) -> None:
    for node in ast.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            raise TemplateSourceError(
                part,
                f"{type(node).__name__} is not allowed: templates may use {{{{ variables }}}}, "
                "if blocks, ~ and the filters " + ", ".join(sorted(_ALLOWED_FILTERS)),
            )
        if isinstance(node, nodes.Filter) and node.name not in _ALLOWED_FILTERS:
            raise TemplateSourceError(part, f"filter {node.name!r} is not allowed")
        if isinstance(node, nodes.Test) and node.name not in _ALLOWED_TESTS:
            raise TemplateSourceError(part, f"test {node.name!r} is not allowed")


def compile_part(part: str, source: str) -> Any:
    """The compiled Jinja template of one part; raises TemplateSourceError."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSourceError(part, f"longer than {MAX_SOURCE_CHARS} characters")
    if "\x00" in source:  # Postgres text and JSON cannot hold NUL
        raise TemplateSourceError(part, "contains a NUL character")
    try:
        ast = _ENV.parse(source)
    except TemplateError as exc:
        raise TemplateSourceError(part, f"syntax error: {exc}") from None
    except RecursionError:  # thousands of nested blocks or brackets
        raise TemplateSourceError(part, "nested too deeply") from None
    _check_nodes(part, ast)
    known = PART_VARIABLES[part]
    # Every name, not only Jinja's "undeclared" ones: `self` is resolved by Jinja itself (the
    # template object) and would pass find_undeclared_variables. Templates assign nothing, so
    # every Name node is a variable read.
    used = meta.find_undeclared_variables(ast) | {n.name for n in ast.find_all(nodes.Name)}
    unknown = sorted(used - set(known))
    if unknown:
        raise TemplateSourceError(
            part, f"unknown variable(s) {unknown}; known here: {list(known) or 'none'}"
        )
    missing = sorted(set(REQUIRED_VARIABLES.get(part, ())) - used)
    if missing:
        raise TemplateSourceError(part, f"must use {missing}")
    return _ENV.from_string(source)


_SAMPLE = {
    "question": "\u27e6QUESTION\u27e7",
    "answer": "\u27e6ANSWER\u27e7",
    "critique": "\u27e6CRITIQUE\u27e7",
}


def _render(part: str, compiled: Any, values: dict[str, str]) -> str:
    try:
        return str(compiled.render(**values))
    except (TemplateError, RecursionError) as exc:
        raise TemplateSourceError(part, f"does not render: {exc}") from None


def validate_sources(sources: TemplateSources) -> dict[str, Any]:
    """Compile every part and render it with sample values; the critique request must ask for
    the verdict line the parser reads. Returns the compiled parts."""
    compiled = {p: compile_part(p, getattr(sources, p)) for p in PART_VARIABLES}
    for part, tpl in compiled.items():
        values = {k: _SAMPLE[k] for k in PART_VARIABLES[part]}
        text = _render(part, tpl, values)
        if not text.strip() and part not in ("system", "solve_system"):
            raise TemplateSourceError(part, "renders to an empty text")
        for name in REQUIRED_VARIABLES.get(part, ()):
            if _SAMPLE[name] not in text:  # e.g. hidden behind an if that is never true
                raise TemplateSourceError(part, f"does not show {name!r} when rendered")
    critique = _render("critique", compiled["critique"], _SAMPLE)
    for line in VERDICT_LINES:
        if line not in critique:
            raise TemplateSourceError(
                "critique",
                f"must ask the teacher to end with the verdict line, verbatim: "
                f"{' / '.join(repr(v) for v in VERDICT_LINES)} (missing {line!r})",
            )
    return compiled


MAX_PROMPT_SETTING = "CGD_MAX_PROMPT_CHARS"


class PromptTooLong(ValueError):
    """A request's messages would be longer than the cap; rendering stopped at the cap."""

    def __init__(self, stage: str, max_chars: int) -> None:
        super().__init__(
            f"the {stage} prompt is longer than {MAX_PROMPT_SETTING} ({max_chars} characters)"
        )
        self.stage = stage
        self.max_chars = max_chars


def prompt_chars(messages: list[Message]) -> int:
    """What the cap counts: the characters of every message's content."""
    return sum(len(m["content"]) for m in messages)


@dataclass(frozen=True)
class Template:
    """A named, versioned template; ``version`` is stored with every call it produced.

    ``max_chars`` caps each request's messages (all of them together): rendering stops as soon
    as the output passes it and raises :class:`PromptTooLong`, so a text that repeats a long
    question a thousand times never exists in memory. None: no cap (the built-in texts, tests).
    """

    name: str
    version: str
    sources: TemplateSources
    max_chars: int | None = field(default=None, compare=False)
    _compiled: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", validate_sources(self.sources))

    def with_cap(self, max_chars: int) -> Template:
        """This template with every request capped at ``max_chars`` characters."""
        capped = copy.copy(self)  # the compiled parts are shared, not compiled again
        object.__setattr__(capped, "max_chars", max_chars)
        return capped

    def _budget(self, stage: str, used: int) -> int:
        if self.max_chars is None:
            return sys.maxsize
        if used > self.max_chars:
            raise PromptTooLong(stage, self.max_chars)
        return self.max_chars - used

    def _text(self, stage: str, part: str, used: int, **values: str) -> str:
        """Render ``part`` piece by piece; stop once ``used`` plus its output passes the cap."""
        budget = self._budget(stage, used)
        pieces: list[str] = []
        for piece in self._compiled[part].generate(**values):
            budget -= len(piece)
            if budget < 0:
                raise PromptTooLong(stage, self.max_chars or 0)
            pieces.append(piece)
        return "".join(pieces)

    def probe(self, question: str) -> list[Message]:
        # The reference release: the question is the only user turn.
        self._budget("probe", len(question))
        return [{"role": "user", "content": question}]

    def critique(self, question: str, answer: str, stage: str = "critique") -> list[Message]:
        system = self._text(stage, "system", 0)
        user = self._text(stage, "critique", len(system), question=question, answer=answer)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def refine(self, question: str, answer: str, critique: str) -> list[Message]:
        head = self.critique(question, answer, stage="refine")
        used = prompt_chars(head) + len(critique)
        turn = self._text("refine", "refine", used, question=question, answer=answer,
                          critique=critique)  # fmt: skip
        return [
            *head,
            {"role": "assistant", "content": critique},
            {"role": "user", "content": turn},
        ]

    def solve(self, question: str) -> list[Message]:
        """The ``teacher_solution`` call: the teacher answers the question directly."""
        system = self._text("solve", "solve_system", 0)
        user = self._text("solve", "solve", len(system), question=question)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# The verdict line: a line that *starts* with the label (after markdown such as `**`, `#`, `>`,
# `-` or a backtick), e.g. `Conclusion: right`, `**Conclusion:** Wrong.`, `Conclusion - Right`.
# Anchoring to the line start keeps a label quoted mid-text ("the student wrote `Conclusion:
# right`") from counting; the *last* such line is the teacher's final word.
_LABEL_LINE_RE = re.compile(
    r"^[\s>#*_`~\-+\u2022]*conclusion(?![a-z])[*_`]*\s*[:\-\u2013\u2014=]?[*_`]*\s*(?P<rest>.*)$",
    re.IGNORECASE | re.MULTILINE,
)
# Fallback for a one-paragraph critique: the label closing its last line ("... Conclusion: wrong").
_TRAILING_LABEL_RE = re.compile(
    r"\bconclusion[*_`]*\s*[:\-\u2013\u2014=][*_`]*\s*(?P<rest>[^\n]*?)[\s.!*_`]*\Z",
    re.IGNORECASE,
)
_VERDICT_WORD_RE = re.compile(r"\b(right|wrong|correct|incorrect)\b", re.IGNORECASE)
_VERDICT_MAP = {"right": "right", "correct": "right", "wrong": "wrong", "incorrect": "wrong"}
_FLIP = {"right": "wrong", "wrong": "right"}
# A negation just before the verdict word flips it: "not correct", "isn't right", "nothing wrong".
_NEGATION_RE = re.compile(
    r"(?:\b(?:not|never|no|nothing)|n['\u2019]t)(?:\s+(?:quite|entirely|fully|completely|"
    r"totally|all|at\s+all))?\s*$",
    re.IGNORECASE,
)
# Hedges and alternatives make a line ambiguous: "partially correct", "right or wrong",
# "right/wrong" (the template's instruction echoed back), "correct?".
_HEDGE_RE = re.compile(
    r"\b(?:partially|partly|mostly|almost|nearly|half|somewhat|possibly|probably|maybe|"
    r"perhaps|likely|unclear|unsure|uncertain)\s*$",
    re.IGNORECASE,
)
_ALTERNATIVE_RE = re.compile(
    r"^\s*[*_`]*\s*(?:/|\||\bor\b|\bnor\b)[^.\n]{0,30}?\b(?:right|wrong|correct|incorrect)\b"
    r"|^\s*[*_`]*\s*\?",
    re.IGNORECASE,
)


def _verdict_on_line(rest: str) -> str | None:
    """The verdict the first verdict word of ``rest`` gives, or None when there is none or the
    line is ambiguous."""
    m = _VERDICT_WORD_RE.search(rest)
    if m is None:
        return None
    before, after = rest[: m.start()], rest[m.end() :]
    if _HEDGE_RE.search(before) or _ALTERNATIVE_RE.search(after):
        return None
    verdict = _VERDICT_MAP[m.group(1).lower()]
    return _FLIP[verdict] if _NEGATION_RE.search(before) else verdict


def parse_verdict(critique: str) -> str | None:
    """The critique's verdict, ``"right"``/``"wrong"``, or ``None`` when it has no verdict line or
    that line is ambiguous.

    The verdict line is the last line that starts with ``Conclusion`` (markdown allowed); its
    first verdict word decides (``right``/``correct`` or ``wrong``/``incorrect``, flipped by a
    negation such as "not correct"). A label alone on its line takes the next non-empty line.
    Without such a line, a critique whose last line ends in ``Conclusion: <verdict>`` counts.
    """
    text = critique or ""
    labels = list(_LABEL_LINE_RE.finditer(text))
    if labels:
        last = labels[-1]
        rest = last.group("rest")
        if not rest.strip(" \t*_`.:"):
            # "**Conclusion:**" on its own line, the verdict on the next one.
            following = [ln for ln in text[last.end() :].splitlines() if ln.strip()]
            rest = following[0] if following else ""
        return _verdict_on_line(rest)
    trailing = _TRAILING_LABEL_RE.search(text.rstrip())
    return _verdict_on_line(trailing.group("rest")) if trailing else None


_TAG_RE = {
    tag: re.compile(rf"<{tag}>\n(.*?)\n</{tag}>", re.DOTALL)
    for tag in ("question", "student_answer")
}


def extract_tagged(text: str, tag: str) -> str | None:
    """The text inside ``<tag>…</tag>`` of a critique prompt (used by the simulator)."""
    m = _TAG_RE[tag].search(text)
    return m.group(1) if m else None
