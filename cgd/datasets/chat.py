"""Chat-format rows: ``messages: [{role, content}, …]`` → one prompt and maybe a reference.

The prompt is the conversation up to and including its last user turn. Every stage of a job
puts the question into a template as one piece of text, so a conversation becomes one string:

- a single user turn (the usual instruction row) is that turn's text, unchanged;
- anything longer (a system turn, earlier user and assistant turns) is a transcript, one block
  per turn headed by its role (``System:``, ``User:``, ``Assistant:``), blocks separated by a
  blank line. The system turn is kept as the transcript's first block.

An assistant turn after the last user turn is the reference answer, unless the row names one in
a reference field (which then wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from cgd.datasets.errors import InvalidDataset

ROLES = ("system", "user", "assistant")
_HEADS = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True, slots=True)
class Chat:
    prompt: str
    reference: str | None  # the final assistant turn, when there is one


def is_chat(value: Any) -> TypeGuard[list[Any]]:
    return isinstance(value, list)


def read_chat(turns: list[Any], line: int, name: str) -> Chat:
    """The prompt and final assistant turn of ``turns``; InvalidDataset names the bad turn."""
    if not turns:
        raise InvalidDataset(f"{name!r} is an empty conversation", line=line, field=name)
    checked: list[tuple[str, str]] = []
    for i, turn in enumerate(turns):
        where = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise InvalidDataset(
                f"{where} must be an object with role and content", line=line, field=where
            )
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            raise InvalidDataset(
                f"{where}.role must be one of {list(ROLES)}, got {role!r}",
                line=line,
                field=f"{where}.role",
            )
        if role == "system" and i != 0:
            raise InvalidDataset(
                f"{where}: a system turn may only open the conversation",
                line=line,
                field=f"{where}.role",
            )
        if not isinstance(content, str):
            raise InvalidDataset(
                f"{where}.content must be a string", line=line, field=f"{where}.content"
            )
        if "\x00" in content:  # Postgres text cannot hold NUL
            raise InvalidDataset(
                f"{where}.content contains a NUL character", line=line, field=f"{where}.content"
            )
        checked.append((role, content))
    last_user = max((i for i, (role, _) in enumerate(checked) if role == "user"), default=None)
    if last_user is None:
        raise InvalidDataset(f"{name!r} has no user turn", line=line, field=name)
    after = checked[last_user + 1 :]
    if len(after) > 1:
        raise InvalidDataset(
            f"{name}: at most one assistant turn may follow the last user turn",
            line=line,
            field=f"{name}[{last_user + 2}]",
        )
    if not checked[last_user][1].strip():
        raise InvalidDataset("empty prompt", line=line, field=f"{name}[{last_user}].content")
    asked = checked[: last_user + 1]
    if len(asked) == 1:
        prompt = asked[0][1]
    else:
        prompt = "\n\n".join(f"{_HEADS[role]}: {content}" for role, content in asked)
    return Chat(prompt, after[0][1] if after else None)
