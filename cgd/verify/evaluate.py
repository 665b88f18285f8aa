"""Constant/expression evaluation: the fast path for surds, pi, fractions and complex numbers."""

from __future__ import annotations

import math
import re

from cgd.verify.normalize import RELATIVE_TOLERANCE

# -- constant expressions: a tiny evaluator for what most non-numeric answers are ------------------
#
# Surds, pi, fractions and complex numbers ("3\\sqrt{13}", "-\\frac{\\pi}{6}", "6-5i") are the
# bulk of what numbers cannot decide, and math-verify spends ~10-50 ms parsing each with ANTLR.
# A constant evaluates to a complex float here. The same evaluator, given sample values for
# letters, shows that "x^2+1" is not 5 and not "x^2+2" (they differ at the sample point); that
# two expressions agree there proves nothing, so that is left to math-verify.
# Anything it does not know (functions, relations, subscripts, ambiguous spellings) makes it
# give up and leaves the pair to math-verify.

_TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|[-+*/^(){}\[\]]|[A-Za-z]")
# Beyond this, float noise (relative 1e-12) could blur integers 1 apart: let math-verify decide.
_MAX_MAGNITUDE = 1e10
# Two exact spellings ("\\sqrt{2}", "\\frac{99}{70}") may differ by little more than float noise;
# the METHOD's 1e-4 tolerance is for answers written as decimals (approximations).
_EXACT_TOLERANCE = 1e-12
# "Is this expression in x really not the constant c?" must survive float noise in identities
# such as (x+1)^2-x^2-2x, hence a looser bound; genuinely varying values differ far more.
_VARIES_TOLERANCE = 1e-9
_MULTIPLY = {"*", "\\cdot", "\\times"}
_ATOM_START = {"\\pi", "\\sqrt", "\\frac", "(", "{", "i"}
_COLLECTION_RE = re.compile(r"[,;]|\\cup|\\cap|\\begin\{|^\\\{")


class _NotConstant(Exception):
    """The expression is not one this evaluator understands."""


class _ConstParser:
    """Recursive descent over LaTeX tokens: + - * / ^, \\cdot, \\times, \\frac, \\sqrt, \\pi,
    i, parentheses/braces, implicit multiplication, and letters bound in ``variables``."""

    def __init__(self, tokens: list[str], variables: dict[str, complex] | None = None) -> None:
        self.tokens = list(tokens)  # argument() may split a token: never touch the caller's
        self.variables = variables or {}
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _NotConstant(f"expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def parse(self) -> complex:
        value = self.expr()
        if self.peek() is not None:
            raise _NotConstant(f"trailing {self.peek()!r}")
        return value

    def expr(self) -> complex:
        value = self.unary()
        while self.peek() in ("+", "-"):
            op = self.take()
            value = _guard(value + self.unary() if op == "+" else value - self.unary())
        return value

    def unary(self) -> complex:
        if self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
            return sign * self.unary()
        return self.term()

    def starts_atom(self, token: str | None) -> bool:
        return token is not None and (
            _is_number(token) or token in _ATOM_START or token in self.variables
        )

    def term(self) -> complex:
        last_was_number = _is_number(self.peek())
        value = self.power()
        while True:
            token = self.peek()
            if token in _MULTIPLY:
                self.take()
                value = _guard(value * self.power())
            elif token == "/":
                self.take()
                value = _guard(value / self.power())
            elif self.starts_atom(token):
                if last_was_number and (token == "\\frac" or _is_number(token)):
                    # "1\\frac{4}{5}" is a mixed number (9/5) to some, a product to others.
                    raise _NotConstant("ambiguous number juxtaposition")
                value = _guard(value * self.power())
            else:
                return value
            last_was_number = False

    def power(self) -> complex:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        token = self.peek()
        if token == "{":
            exponent = self.group()
        elif token is not None and (
            (_is_number(token) and len(token) == 1) or token in self.variables
        ):
            exponent = self.atom()
        else:
            raise _NotConstant("unbraced exponent")  # "2^10" means 2^1 * 0 in LaTeX
        if abs(exponent) > 64:
            raise _NotConstant("exponent too large")
        if base == 0 and exponent.real <= 0:
            raise _NotConstant("0 to a non-positive power")
        return _guard(base**exponent)

    def atom(self) -> complex:
        token = self.take()
        if _is_number(token):
            return _guard(complex(float(token)))
        if token == "\\pi":
            return complex(math.pi)
        if token == "i":
            return 1j
        if token in self.variables:
            return self.variables[token]
        if token in ("(", "{"):
            value = self.expr()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            numerator = self.argument()
            denominator = self.argument()
            if denominator == 0:
                raise _NotConstant("division by zero")
            return _guard(numerator / denominator)
        if token == "\\sqrt":
            return self.sqrt()
        raise _NotConstant(f"unsupported {token!r}")

    def sqrt(self) -> complex:
        index = 2.0
        if self.peek() == "[":
            self.take()
            index = self.expr().real
            self.take("]")
        radicand = self.argument()
        if radicand.imag == 0 and radicand.real >= 0:
            return complex(radicand.real ** (1 / index))
        if index == 2 and radicand.imag == 0:
            return 1j * math.sqrt(-radicand.real)
        raise _NotConstant("root of a negative or complex number")  # real vs principal root

    def argument(self) -> complex:
        """A macro argument: a braced group, or one character ("\\frac12", "\\sqrt2")."""
        token = self.peek()
        if token == "{":
            return self.group()
        if token is not None and _is_number(token):
            self.pos += 1
            if len(token) > 1:  # "\\frac12": the argument is "1", "2" is the next one
                self.tokens.insert(self.pos, token[1:])
            return complex(float(token[0]))
        if token in ("\\pi", "i") or token in self.variables:
            return self.atom()
        raise _NotConstant("unsupported macro argument")

    def group(self) -> complex:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value


def _is_number(token: str | None) -> bool:
    return token is not None and (token[0].isdigit() or token[0] == ".")


def _guard(value: complex) -> complex:
    if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(value) > _MAX_MAGNITUDE:
        raise _NotConstant("too large for a float comparison")
    return value


def _tokens(normalized: str) -> list[str] | None:
    tokens = _TOKEN_RE.findall(normalized)
    # Characters the tokenizer does not know ("=", ",", "_", "!", "|", ...) mean: not for us.
    return tokens if tokens and "".join(tokens) == normalized else None


def _evaluate(tokens: list[str], variables: dict[str, complex] | None = None) -> complex | None:
    try:
        return _ConstParser(tokens, variables).parse()
    except (_NotConstant, ZeroDivisionError, OverflowError, ValueError):
        return None


def constant_value(normalized: str) -> complex | None:
    """Value of a normalised constant ("3\\sqrt{13}", "\\frac{\\pi}{6}", "1+2i"), else None."""
    tokens = _tokens(normalized)
    return None if tokens is None else _evaluate(tokens)


def _sample_value(letter: str, point: int) -> complex:
    """A generic, deterministic value for a variable (golden-ratio spacing, in [0.3, 1.7])."""
    return complex(0.3 + ((ord(letter) * 0.6180339887498949 * point) % 1.0) * 1.4)


def _differ_somewhere(norm_a: str, norm_b: str) -> bool:
    """True when two expressions are shown to differ: at some sample point of their letters
    they take different values. False means "cannot tell" (unknown syntax, or equal there)."""
    tokens_a, tokens_b = _tokens(norm_a), _tokens(norm_b)
    if tokens_a is None or tokens_b is None:
        return False
    letters = {t for t in tokens_a + tokens_b if len(t) == 1 and t.isalpha() and t != "i"}
    if not letters - {"e"}:
        return False  # no letter but e, which may well be Euler's number: math-verify decides
    for point in (1, 2):
        # e as Euler's number: values that still differ differ under either reading of e.
        variables = {x: (complex(math.e) if x == "e" else _sample_value(x, point)) for x in letters}
        a, b = _evaluate(tokens_a, variables), _evaluate(tokens_b, variables)
        if a is None or b is None:
            return False
        if abs(a - b) > _VARIES_TOLERANCE * max(abs(a), abs(b), 1.0):
            return True
    return False


def _constants_close(a: complex, b: complex, approximate: bool) -> bool:
    tolerance = RELATIVE_TOLERANCE if approximate else _EXACT_TOLERANCE
    return abs(a - b) <= max(tolerance * max(abs(a), abs(b)), 1e-12)


def _evaluated_decision(norm_pred: str, norm_gold: str) -> bool | None:
    """Decide by evaluation: equal constants, or expressions that differ somewhere (only
    "different" is certain for expressions in variables). None when math-verify must."""
    pred, gold = constant_value(norm_pred), constant_value(norm_gold)
    if pred is not None and gold is not None:
        return _constants_close(pred, gold, approximate="." in norm_pred + norm_gold)
    if pred is not None or gold is not None:
        other = norm_gold if pred is not None else norm_pred
        if _COLLECTION_RE.search(other):
            return False  # a constant is no tuple/interval/set/matrix/list
    if _differ_somewhere(norm_pred, norm_gold):
        return False
    return None
