"""Prompt templates for the teacher and student calls: built-ins and team templates.

``core`` says what a template is and renders it in a sandbox; ``builtin`` holds the built-in
wording; ``ops``/``schemas``/``errors`` are the team-template resource (``/v1/templates``).
Importing this package pulls in no database code (the simulator uses it).
"""

from cgd.templates.builtin import (
    CGD_TRAIN_INSTRUCTION,
    EVAL_SYSTEM,
    TEMPLATES,
    get_template,
)
from cgd.templates.core import (
    VERDICT_LINES,
    Message,
    Template,
    TemplateSourceError,
    TemplateSources,
    extract_tagged,
    parse_verdict,
)

__all__ = [
    "CGD_TRAIN_INSTRUCTION",
    "EVAL_SYSTEM",
    "TEMPLATES",
    "VERDICT_LINES",
    "Message",
    "Template",
    "TemplateSourceError",
    "TemplateSources",
    "extract_tagged",
    "get_template",
    "parse_verdict",
]
