"""Plain-code numerics: answers written as Python/NumPy expressions ("-1./3", "np.arcsin(10/13)",
"math.sqrt(2)", "2**0.5", "1_000").

Some references (Minerva-style sets) and many model outputs write a number as code. LaTeX parsers
cannot read these ("np" becomes a product of variables), so the value is computed here with a
whitelisting evaluator over Python's ``ast``: numbers, + - * / ** and unary signs, and calls to
known math functions, optionally prefixed ``np.``/``numpy.``/``math.``/``sympy.``/``sp.``
(plus the constants ``pi``, ``e``, ``inf`` when prefixed). Anything else (names, subscripts,
``^``, ``//``, ``%``, tuples, keywords) gives None. Nothing is ever ``eval``-ed.

:func:`to_latex` rewrites such an answer (and plain-text scientific notation) into LaTeX that
math-verify reads correctly, for pairs the cheap checks cannot decide.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from fractions import Fraction

# Characters a code answer may contain (normalised: no whitespace). No "\\", "{", "^".
_CODE_CHARS_RE = re.compile(r"^[\w.+\-*/(),]+$")
# It must also look like code, not like an ordinary number or LaTeX-free algebra: a module
# prefix, "**", Python digit grouping, a bare trailing-dot float ("1./3", "2."), or a call.
_CODE_MARKER_RE = re.compile(
    r"\b(?:np|numpy|math|sympy|sp)\.|\*\*|\d_\d|\d\.(?!\d)|\b[A-Za-z]\w*\("
)
_MODULES = frozenset({"np", "numpy", "math", "sympy", "sp"})
_MAX_MAGNITUDE = 1e300


def _factorial(x: float) -> float:
    if x != int(x) or x < 0 or x > 170:
        raise ValueError("factorial of a non-integer or too large")
    return float(math.factorial(int(x)))


def _comb(n: float, k: float) -> float:
    if n != int(n) or k != int(k) or not 0 <= k <= n <= 1000:
        raise ValueError("bad binomial")
    return float(math.comb(int(n), int(k)))


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt,
    "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x),
    "exp": math.exp,
    "log": math.log,  # natural log, as in Python and NumPy (log(x, b) for base b)
    "ln": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "arcsin": math.asin,
    "arccos": math.acos,
    "arctan": math.atan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "arctan2": math.atan2,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "abs": abs,
    "fabs": math.fabs,
    "radians": math.radians,
    "degrees": math.degrees,
    "deg2rad": math.radians,
    "rad2deg": math.degrees,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
    "comb": _comb,
    "pow": math.pow,
    "power": math.pow,
    "float": float,
    "float64": float,
    "float32": float,
    "int": int,
    "round": round,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "inf": math.inf}


class _NotCode(Exception):
    pass


def looks_like_code(normalized: str) -> bool:
    """Whether a normalised answer is (probably) a code expression worth evaluating."""
    return bool(_CODE_CHARS_RE.match(normalized) and _CODE_MARKER_RE.search(normalized))


def _name(node: ast.expr, *, call: bool) -> str:
    """The function or constant a (possibly module-prefixed) name denotes."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id not in _MODULES:
            raise _NotCode(f"unknown module {node.value.id!r}")
        return node.attr
    if isinstance(node, ast.Name) and call:
        return node.id  # "sqrt(2)": a bare function call
    raise _NotCode("a bare name is a variable")  # "e", "pi", "x" alone are for LaTeX readers


Number = Fraction | float


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction) and exponent.denominator == 1:
        if abs(exponent) > 1000 or (abs(base) > 1 and abs(exponent) * math.log10(abs(base)) > 400):
            raise _NotCode("power too large")
        if base == 0 and exponent < 0:
            raise _NotCode("division by zero")
        return base ** int(exponent)
    if abs(float(exponent)) > 1000:
        raise _NotCode("exponent too large")
    value: object = float(base) ** float(exponent)
    if not isinstance(value, float):
        raise _NotCode("complex power")
    return value


def _eval(node: ast.expr) -> tuple[Number, bool]:
    """(value, whether a float literal appeared) of an expression node. Integer arithmetic
    (+ - * / and integer powers of integers and fractions) stays exact, as a Fraction."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _NotCode("not a real number literal")
        if isinstance(node.value, int):
            return Fraction(node.value), False
        return float(node.value), True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value, decimal = _eval(node.operand)
        return (-value if isinstance(node.op, ast.USub) else value), decimal
    if isinstance(node, ast.BinOp):
        (left, d1), (right, d2) = _eval(node.left), _eval(node.right)
        result: Number
        if isinstance(node.op, ast.Add):
            result = left + right
        elif isinstance(node.op, ast.Sub):
            result = left - right
        elif isinstance(node.op, ast.Mult):
            result = left * right
        elif isinstance(node.op, ast.Div):
            if right == 0:
                raise _NotCode("division by zero")
            result = left / right
        elif isinstance(node.op, ast.Pow):
            result = _power(left, right)
        else:
            raise _NotCode(f"operator {type(node.op).__name__}")  # //, %, ^, @, shifts
        return result, d1 or d2
    if isinstance(node, ast.Attribute):
        name = _name(node, call=False)
        if name not in _CONSTANTS:
            raise _NotCode(f"unknown constant {name!r}")
        return _CONSTANTS[name], False
    if isinstance(node, ast.Call):
        name = _name(node.func, call=True)
        function = _FUNCTIONS.get(name)
        if function is None or node.keywords or not 1 <= len(node.args) <= 2:
            raise _NotCode(f"unknown function {name!r}")
        args = [_eval(arg) for arg in node.args]
        value = function(*(float(a) for a, _ in args))
        return float(value), any(d for _, d in args)
    raise _NotCode(f"unsupported {type(node).__name__}")


def code_value(normalized: str) -> tuple[Number, bool] | None:
    """(value, approximate) of a code answer, or None when it is not one we can evaluate.

    The value is a Fraction when the arithmetic was exact (integers, + - * /, integer powers),
    else a float. ``approximate`` is True when a float literal ("1./3", "0.5") was used: it is
    compared with the decimal tolerance then.
    """
    if not looks_like_code(normalized):
        return None
    try:
        tree = ast.parse(normalized, mode="eval")
        value, approximate = _eval(tree.body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError, OverflowError, _NotCode):
        return None
    except RecursionError:
        return None
    if isinstance(value, float) and (not math.isfinite(value) or abs(value) > _MAX_MAGNITUDE):
        return None
    return value, approximate


# -- rewriting for math-verify ------------------------------------------------------------------

_MODULE_PREFIX_RE = re.compile(r"\b(?:np|numpy|math|sympy|sp)\.")
_LATEX_FUNCTIONS = {
    "arcsin": "\\arcsin",
    "arccos": "\\arccos",
    "arctan": "\\arctan",
    "asin": "\\arcsin",
    "acos": "\\arccos",
    "atan": "\\arctan",
    "sin": "\\sin",
    "cos": "\\cos",
    "tan": "\\tan",
    "sinh": "\\sinh",
    "cosh": "\\cosh",
    "tanh": "\\tanh",
    "exp": "\\exp",
    "log": "\\ln",
    "ln": "\\ln",
}
_FUNCTION_NAMES = "|".join(sorted(_LATEX_FUNCTIONS, key=len, reverse=True))
_FUNCTION_RE = re.compile(rf"\b({_FUNCTION_NAMES})\(")
_SQRT_RE = re.compile(r"\bsqrt\(")
_PLAIN_SCI_RE = re.compile(
    r"(?<![\w.\\])(\d+(?:\.\d*)?|\.\d+)(?:[eE]([-+]?\d+)|\s*(?:\*|x|×)\s*10\s*(?:\*\*|\^)\s*\(?([-+]?\d+)\)?)(?![\w.])"
)


def _sqrt_to_latex(text: str) -> str:
    """sqrt(x) -> \\sqrt{x} with balanced parentheses."""
    out: list[str] = []
    i = 0
    for m in _SQRT_RE.finditer(text):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            j += 1
        if depth:
            return text  # unbalanced: leave it alone
        out.append(text[i : m.start()] + "\\sqrt{" + _sqrt_to_latex(text[m.end() : j - 1]) + "}")
        i = j
    out.append(text[i:])
    return "".join(out)


def to_latex(answer: str) -> str:
    """Rewrite plain-text scientific notation and code spellings into LaTeX for math-verify.

    "4.5e33" -> "4.5\\times10^{33}", "np.arcsin(10/13)" -> "\\arcsin(10/13)",
    "math.sqrt(2)" -> "\\sqrt{2}", "2**0.5" -> "2^{0.5}", "1_000" -> "1000". Other text is kept.
    """

    def sci(m: re.Match[str]) -> str:
        exponent = m.group(2) if m.group(2) is not None else m.group(3)
        return f"{m.group(1)}\\times10^{{{exponent}}}"

    text = _PLAIN_SCI_RE.sub(sci, answer)
    if "\\" in text or "{" in text:
        return text  # LaTeX already: only the scientific notation needed help
    text = re.sub(r"(?<=\d)_(?=\d{3})", "", text)
    text = _MODULE_PREFIX_RE.sub("", text)
    text = re.sub(r"\bpi\b", "\\\\pi", text)
    text = _sqrt_to_latex(text)
    text = _FUNCTION_RE.sub(lambda m: _LATEX_FUNCTIONS[m.group(1)] + "(", text)
    text = re.sub(r"\*\*\s*\(([^()]*)\)", r"^{\1}", text)
    text = re.sub(r"\*\*\s*([-+]?[\w.]+)", r"^{\1}", text)
    return re.sub(r"(?<!\^)\*", r"\\cdot ", text)  # "P_A^*" is a label (pure A), not a product
