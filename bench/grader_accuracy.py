"""Grader accuracy on real references: gold vs gold, equivalent rewrites, and wrong answers.

For every reference of GSM8K (train, 7,473) and MATH-500 the script builds responses and grades
them with ``cgd.verify`` (``VerifierPool``, kind ``math``):

* ``gold``         the reference's own final answer, boxed: must be accepted;
* ``rewrite/*``    equivalent spellings of the gold, generated from its value or its text, each
                   must be accepted:
    - ``scientific``  4.5e33, 4.5E+33, 4.5 \\times 10^{33}, 4.5\\cdot10^{33}, 4.5*10**33,
                      4.5 x 10^33 (numbers with a terminating decimal form)
    - ``fraction``    decimal -> \\frac{p}{q} and p/q, fraction -> exact decimal (when the decimal
                      terminates), integer -> \\frac{3n}{3}
    - ``units``       "18 dollars", "18\\text{ dollars}", "18 cm", "18\\,\\mathrm{m/s}",
                      "18 \\text{cm}^2", "18 apples" (numbers; constants like \\frac{\\sqrt3}2)
    - ``thousands``   1,234  1{,}234  1\\,234  1 234  1_234 (numbers >= 1000)
    - ``boxed``       $\\boxed{X}$, \\[\\boxed{X}\\], \\fbox{X}, \\boxed{\\displaystyle X},
                      "The final answer is X." (numbers) and "#### X" (numbers)
* ``wrong/*``      answers that must be rejected: the gold's value perturbed (+1, -1, x10, /10,
                   negated, last digit changed), written plain, in scientific notation, with a
                   unit and with thousands separators; for non-numeric golds a digit of the text
                   changed, and the next reference with a different answer.

A third set, ``symbolic`` (``tests/data/physics_answers.jsonl``: 164 physics and chemistry
answers in LaTeX, with subscripted symbols and several terms), gets its own cases:

* ``gold``; ``rewrite/spelling`` (one-character subscripts unbraced, ``\\left``/``\\right``
  dropped, ``\\varepsilon`` as ``\\epsilon``, spaces removed) and ``rewrite/reordered`` (the
  first two terms swapped), which must be accepted;
* one change each, which must be rejected: ``wrong/digit`` (one digit +1, up to three per gold),
  ``wrong/sign`` (the first + or - flipped), ``wrong/subscript`` (the first subscript's first
  character changed), ``wrong/term`` (the last term dropped), ``wrong/case`` (the first lone
  letter in the other case: T -> t), ``wrong/greek`` (the first Greek letter replaced:
  \\omega -> \\Omega, \\hbar -> h), ``wrong/prime`` (the first lone letter primed: v -> v').

Undecided verdicts (timeouts; ``unparsed``: an answer math-verify cannot read whole) count as
not accepted, and are counted in their own column. Prints a table and, with ``--json``, writes
every figure and the failures to a file.

    .venv/bin/python bench/grader_accuracy.py [--gsm8k PATH] [--math500 PATH] [--symbolic PATH]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cgd.answers import reference_answer  # noqa: E402
from cgd.verify import VerifierPool  # noqa: E402

DATA = (ROOT / "tests" / "data", ROOT / "cgd" / "data")


def default_path(name: str, bundled_name: str) -> Path:
    """The full set shipped with the tests, else the package's bundled copy or sample."""
    for folder in DATA:
        if (folder / name).exists():
            return folder / name
    return DATA[1] / bundled_name


# -- an independent reading of simple numeric golds (not the grader's own parser) ---------------

_PLAIN_NUMBER_RE = re.compile(r"^(-?)(\d+(?:\.\d+)?|\.\d+)$")
_FRACTION_RE = re.compile(r"^(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}$")


def simple_value(final: str) -> Fraction | None:
    """The value of an integer, decimal or \\frac{a}{b} gold (commas, \\!, $ removed)."""
    s = final.replace("\\!", "").replace("\\$", "").replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    m = _PLAIN_NUMBER_RE.match(s)
    if m:
        value = Fraction(m.group(2))
        return -value if m.group(1) else value
    m = _FRACTION_RE.match(s)
    if m and int(m.group(3)) != 0:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        return -value if m.group(1) else value
    return None


def terminating(value: Fraction) -> bool:
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal_text(value: Fraction) -> str:
    """Exact decimal spelling of a terminating fraction (no exponent, no trailing zeros)."""
    text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def mantissa_exponent(value: Fraction) -> tuple[str, int]:
    exponent = Decimal(value.numerator) / Decimal(value.denominator)
    e = exponent.adjusted()
    mantissa = value / Fraction(10) ** e
    return decimal_text(mantissa), e


def group_thousands(value: Fraction, sep: str) -> str:
    text = decimal_text(value)
    sign = "-" if text.startswith("-") else ""
    whole, _, frac = text.lstrip("-").partition(".")
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return sign + sep.join(groups) + (f".{frac}" if frac else "")


# -- rewrites -------------------------------------------------------------------------------------

Case = tuple[str, str, str]  # (category, response, reference)


def boxed(x: str) -> str:
    return f"Reasoning...\nSo the answer is $\\boxed{{{x}}}$."


def scientific(value: Fraction) -> list[str]:
    if value == 0 or not terminating(value):
        return []
    m, e = mantissa_exponent(value)
    return [
        f"{m}e{e}",
        f"{m}E{e:+d}",
        f"{m} \\times 10^{{{e}}}",
        f"{m}\\cdot10^{{{e}}}",
        f"{m}*10**{e}",
        f"{m} x 10^{e}",
    ]


def fraction_forms(value: Fraction, final: str) -> list[str]:
    out = []
    if value.denominator == 1:
        n = value.numerator
        out.append(f"\\frac{{{3 * n}}}{{3}}")
    else:
        sign = "-" if value < 0 else ""
        p, q = abs(value.numerator), value.denominator
        if "frac" not in final and "/" not in final:  # a decimal gold: give the fraction
            out += [f"{sign}\\frac{{{p}}}{{{q}}}", f"{sign}{p}/{q}"]
        if terminating(value) and "." not in final:  # a fraction gold: give the decimal
            out.append(decimal_text(value))
    return out


UNITS = (
    "{x} dollars",
    "{x}\\text{ dollars}",
    "{x} cm",
    "{x}\\,\\mathrm{{m/s}}",
    "{x} \\text{{cm}}^2",
    "{x} apples",
)


def with_units(x: str) -> list[str]:
    return [u.replace("{{", "{").replace("}}", "}").replace("{x}", x) for u in UNITS]


THOUSANDS_SEPARATORS = (",", "{,}", "\\,", " ", "_")


def thousands(value: Fraction) -> list[str]:
    if abs(value) < 1000 or not terminating(value):
        return []
    return [group_thousands(value, sep) for sep in THOUSANDS_SEPARATORS]


def box_variants(final: str, numeric: bool) -> list[str]:
    out = [
        f"$\\boxed{{{final}}}$",
        f"Hence\n\\[\\boxed{{{final}}}\\]",
        f"\\fbox{{{final}}}",
        f"\\boxed{{\\displaystyle {final}}}",
    ]
    if numeric:
        out += [f"The final answer is {final}.", f"#### {final}"]
    return out


# -- wrong answers --------------------------------------------------------------------------------


def perturbed_values(value: Fraction) -> list[Fraction]:
    candidates = [value + 1, value - 1, value * 10, value / 10]
    if value != 0:
        candidates.append(-value)
    if value.denominator == 1 and value != 0:
        n = value.numerator
        candidates.append(Fraction(n - n % 10 + (n % 10 + 3) % 10) * (1 if n > 0 else 1))
    return [c for c in dict.fromkeys(candidates) if c != value]


def spell(value: Fraction) -> str:
    if terminating(value):
        return decimal_text(value)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def wrong_spellings(value: Fraction) -> list[str]:
    out = [spell(value)]
    out += scientific(value)[:3]
    out.append(f"{spell(value)} dollars")
    out += thousands(value)[:2]
    return out


def perturb_text(final: str) -> str | None:
    """The gold with its first digit changed, if it has one."""
    m = re.search(r"\d", final)
    if m is None:
        return None
    digit = str((int(m.group()) + 1) % 10)
    return final[: m.start()] + digit + final[m.end() :]


_CONSTANT_LIKE_RE = re.compile(r"^(?:[-+*/^().\d{}\s]|\\(?:frac|dfrac|sqrt|pi|cdot)\b)+$")


def cases_for(references: list[object]) -> Iterator[Case]:
    finals = [reference_answer(r) or "" for r in references]
    for i, (reference, final) in enumerate(zip(references, finals, strict=True)):
        yield "gold", boxed(final), reference  # type: ignore[misc]
        value = simple_value(final)
        numeric = value is not None
        constant_like = bool(_CONSTANT_LIKE_RE.match(final)) and not re.search(r",", final)
        if value is not None:
            for x in scientific(value):
                yield "rewrite/scientific", boxed(x), reference  # type: ignore[misc]
            for x in fraction_forms(value, final):
                yield "rewrite/fraction", boxed(x), reference  # type: ignore[misc]
            for x in thousands(value):
                yield "rewrite/thousands", boxed(x), reference  # type: ignore[misc]
        if numeric or constant_like:
            for x in with_units(final):
                yield "rewrite/units", boxed(x), reference  # type: ignore[misc]
        for response in box_variants(final, numeric):
            yield "rewrite/boxed", response, reference  # type: ignore[misc]
        # Wrong answers.
        if value is not None:
            for wrong in perturbed_values(value):
                for x in wrong_spellings(wrong):
                    yield "wrong/perturbed", boxed(x), reference  # type: ignore[misc]
        else:
            text = perturb_text(final)
            if text is not None:
                yield "wrong/digit", boxed(text), reference  # type: ignore[misc]
        partner = next_different(finals, i)
        if partner is not None:
            yield "wrong/other_reference", boxed(partner), reference  # type: ignore[misc]


def next_different(finals: list[str], i: int) -> str | None:
    """The next reference whose answer differs in value (numbers) or in text (others)."""
    own = simple_value(finals[i])
    for step in range(1, len(finals)):
        other = finals[(i + step) % len(finals)]
        other_value = simple_value(re.sub(r"^[a-zA-Z]\s*=\s*", "", other))  # "x=5" names 5
        if own is not None or other_value is not None:
            if own != other_value:
                return other
        elif _canon(other) != _canon(finals[i]):
            return other
    return None


def _canon(text: str) -> str:
    text = re.sub(r"^[a-zA-Z]\s*=\s*", "", text)  # "x=5" names 5
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\left|\\right|\\!|\\,|\s|\^\\circ|\\text\{\s*([^}]*)\}", r"\1", text)
    return text.casefold()


# -- symbolic answers (physics/chemistry): spellings and one-change perturbations -----------------
#
# The gold is a LaTeX expression with subscripted symbols and several terms. Each perturbation
# changes one thing, so that the answer is wrong by construction, and is generated where the
# gold has that thing: a digit, a sign, a subscript, a term.

_DIGIT_RE = re.compile(r"\d")
# A subscript's first letter or digit: "_1", "_{0}", "_{c m}", "_{\mathrm{B}}".
_SUBSCRIPT_RE = re.compile(r"_(?:\{(?:\\(?:mathrm|text)\{)?|)([A-Za-z0-9])")


def _top_level_signs(expr: str) -> list[int]:
    """Positions of the + and - that join terms (outside any brace, bracket or parenthesis)."""
    depth, out = 0, []
    for pos, char in enumerate(expr):
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif char in "+-" and depth == 0 and expr[:pos].strip():
            out.append(pos)
    return out


def digit_changes(gold: str, limit: int = 3) -> list[str]:
    """The gold with one digit changed (d -> d+1 mod 10), for up to ``limit`` digits."""
    out = []
    for m in list(_DIGIT_RE.finditer(gold))[:limit]:
        digit = str((int(m.group()) + 1) % 10)
        out.append(gold[: m.start()] + digit + gold[m.end() :])
    return out


def sign_change(gold: str) -> str:
    """The first + made -, or - made +; an answer without signs negated."""
    for pos, char in enumerate(gold):
        if char in "+-" and not gold[:pos].endswith("^"):  # "A^{-}" is a charge, not a sign
            return gold[:pos] + ("-" if char == "+" else "+") + gold[pos + 1 :]
    return f"-{gold}"


def subscript_change(gold: str) -> str | None:
    """The first subscript's first character changed (0 -> 1, k -> l); None without one."""
    m = _SUBSCRIPT_RE.search(gold)
    if m is None:
        return None
    char = m.group(1)
    if char.isdigit():
        new = str((int(char) + 1) % 10)
    else:
        new = chr(ord(char) + 1) if char not in "zZ" else chr(ord(char) - 1)
    return gold[: m.start(1)] + new + gold[m.end(1) :]


# A Latin letter standing alone (not in a macro name, a word or a text group): m, T, E in E_{1}.
_LONE_LETTER_RE = re.compile(r"(?<![\\A-Za-z])(?<!mathrm\{)(?<!text\{)[A-Za-z](?![A-Za-z])")
# Each Greek letter and a different one it could be mistaken for (or misread as).
_GREEK_SWAPS = {
    "omega": "Omega", "gamma": "Gamma", "theta": "phi", "mu": "nu", "nu": "mu",
    "lambda": "Lambda", "sigma": "Sigma", "rho": "eta", "hbar": "h", "Delta": "delta",
    "varepsilon": "eta", "kappa": "chi", "beta": "alpha", "eta": "zeta", "phi": "psi",
    "tau": "theta", "alpha": "beta",
}  # fmt: skip
_GREEK_NAMES = "|".join(sorted(_GREEK_SWAPS, key=len, reverse=True))
_GREEK_RE = re.compile(rf"\\({_GREEK_NAMES})(?![A-Za-z])")


def case_changed(gold: str) -> str | None:
    """The first lone letter in the other case (T -> t, m -> M); e, i, d are left alone."""
    for m in _LONE_LETTER_RE.finditer(gold):
        if m.group() not in "deiDEI":
            return gold[: m.start()] + m.group().swapcase() + gold[m.end() :]
    return None


def greek_changed(gold: str) -> str | None:
    """The first Greek letter replaced by another (\\omega -> \\Omega, \\hbar -> h)."""
    m = _GREEK_RE.search(gold)
    if m is None:
        return None
    other = _GREEK_SWAPS[m.group(1)]
    other = other if len(other) == 1 else "\\" + other  # a Latin letter has no backslash
    return gold[: m.start()] + other + " " + gold[m.end() :]


def primed(gold: str) -> str | None:
    """The first lone letter primed (v -> v'): another quantity."""
    m = _LONE_LETTER_RE.search(gold)
    return gold[: m.end()] + "'" + gold[m.end() :] if m else None


def term_dropped(gold: str) -> str | None:
    """The gold without its last top-level term; None when it has one term."""
    signs = _top_level_signs(gold)
    return gold[: signs[-1]].rstrip() if signs else None


def terms_swapped(gold: str) -> str | None:
    """The first two top-level terms in the other order (an equal answer)."""
    signs = _top_level_signs(gold)
    if not signs:
        return None
    first = gold[: signs[0]].strip()
    second = gold[signs[0] : signs[1] if len(signs) > 1 else len(gold)].strip()
    rest = gold[signs[1] :] if len(signs) > 1 else ""
    if not first.startswith(("-", "+")):
        first = "+" + first
    return (second.lstrip("+") + first + rest).strip()


def respelled(gold: str) -> str:
    r"""An equal spelling: one-character subscripts unbraced, \left/\right dropped, \varepsilon
    as \epsilon, spaces removed where they separate nothing."""
    text = re.sub(r"_\{([A-Za-z0-9])\}", r"_\1 ", gold)
    text = text.replace("\\left", "").replace("\\right", "").replace("\\varepsilon", "\\epsilon")
    return re.sub(r"\s*([{}()^+=-])\s*", r"\1", text)


def symbolic_cases(references: list[object]) -> Iterator[Case]:
    for reference in references:
        gold = str(reference)
        yield "gold", boxed(gold), gold
        for category, rewrite in (
            ("rewrite/spelling", respelled(gold)),
            ("rewrite/reordered", terms_swapped(gold)),
        ):
            if rewrite is not None and rewrite != gold:
                yield category, boxed(rewrite), gold
        for wrong in digit_changes(gold):
            yield "wrong/digit", boxed(wrong), gold
        yield "wrong/sign", boxed(sign_change(gold)), gold
        for category, wrong in (
            ("wrong/subscript", subscript_change(gold)),
            ("wrong/term", term_dropped(gold)),
            ("wrong/case", case_changed(gold)),
            ("wrong/greek", greek_changed(gold)),
            ("wrong/prime", primed(gold)),
        ):
            if wrong is not None:
                yield category, boxed(wrong), gold


# -- running --------------------------------------------------------------------------------------


def load_references(path: Path) -> list[object]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f if line.strip()]


def run_set(
    name: str,
    references: list[object],
    pool: VerifierPool,
    progress: Callable[[str], None],
    make_cases: Callable[[list[object]], Iterator[Case]] = cases_for,
) -> dict[str, object]:
    cases = list(make_cases(references))
    progress(f"{name}: {len(references)} references, {len(cases)} verifications")
    started = time.perf_counter()
    verdicts = pool.verify_many([("math", response, ref) for _, response, ref in cases])
    elapsed = time.perf_counter() - started
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # n, accepted, undecided
    failures: dict[str, list[dict[str, object]]] = defaultdict(list)
    for (category, response, reference), verdict in zip(cases, verdicts, strict=True):
        must_accept = not category.startswith("wrong")
        accepted = verdict.correct is True
        totals[category][0] += 1
        totals[category][1] += accepted
        totals[category][2] += verdict.correct is None
        if accepted != must_accept:
            failures[category].append(
                {
                    "response": response[-120:],
                    "reference": str(reference)[-80:],
                    "extracted": verdict.extracted,
                    "reason": verdict.reason,
                }
            )
    rewrite = [sum(v[i] for k, v in totals.items() if k.startswith("rewrite")) for i in (0, 1)]
    wrong = [sum(v[i] for k, v in totals.items() if k.startswith("wrong")) for i in (0, 1)]
    return {
        "set": name,
        "references": len(references),
        "verifications": len(cases),
        "seconds": round(elapsed, 2),
        "per_second": round(len(cases) / elapsed, 1),
        "categories": {
            k: {"n": n, "accepted": a, "undecided": u} for k, (n, a, u) in sorted(totals.items())
        },
        "gold_accuracy": totals["gold"][1] / totals["gold"][0],
        "rewrite_accuracy": rewrite[1] / max(1, rewrite[0]),
        "rewrite_n": rewrite[0],
        "false_accept_rate": wrong[1] / max(1, wrong[0]),
        "wrong_n": wrong[0],
        "failures": {k: v[:20] for k, v in failures.items()},
        "failure_counts": {k: len(v) for k, v in failures.items()},
    }


def print_table(result: dict[str, object]) -> None:
    print(
        f"\n{result['set']}: {result['references']} references, {result['verifications']} "
        f"verifications in {result['seconds']} s ({result['per_second']}/s)"
    )
    print(f"{'category':<24} {'n':>7} {'accepted':>9} {'rate':>8} {'undecided':>10}")
    for category, c in result["categories"].items():  # type: ignore[attr-defined]
        rate = c["accepted"] / c["n"]
        print(
            f"{category:<24} {c['n']:>7} {c['accepted']:>9} {100 * rate:>7.2f}% "
            f"{c['undecided']:>10}"
        )
    print(
        f"gold vs gold {100 * result['gold_accuracy']:.2f}% | "  # type: ignore[operator]
        f"rewrites {100 * result['rewrite_accuracy']:.2f}% of {result['rewrite_n']} | "  # type: ignore[operator]
        f"false accepts {100 * result['false_accept_rate']:.3f}% of {result['wrong_n']}"  # type: ignore[operator]
    )
    for category, examples in result["failures"].items():  # type: ignore[attr-defined]
        count = result["failure_counts"][category]  # type: ignore[index]
        print(f"  {category}: {count} failures, e.g.")
        for example in examples[:5]:
            print(f"    {json.dumps(example, ensure_ascii=False)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--gsm8k", type=Path, default=default_path("gsm8k_train.jsonl", "gsm8k_sample.jsonl")
    )
    parser.add_argument(
        "--math500", type=Path, default=default_path("math500.jsonl", "math500.jsonl")
    )
    parser.add_argument(
        "--symbolic",
        type=Path,
        default=ROOT / "tests" / "data" / "physics_answers.jsonl",
        help="Physics/chemistry LaTeX answers, graded against digit, sign, subscript and term "
        "changes.",
    )
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="Write all figures here.")
    args = parser.parse_args()

    results = []
    with VerifierPool(processes=args.processes, timeout_s=10.0) as pool:
        if not pool.wait_ready(120):
            raise SystemExit("verifier workers did not start")
        sets = (
            ("gsm8k", args.gsm8k, cases_for),
            ("math500", args.math500, cases_for),
            ("symbolic", args.symbolic, symbolic_cases),
        )
        for name, path, make_cases in sets:
            references = load_references(path)
            result = run_set(name, references, pool, lambda m: print(m, flush=True), make_cases)
            result["path"] = str(path)
            print_table(result)
            results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
