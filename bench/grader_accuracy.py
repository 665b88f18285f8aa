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

Undecided verdicts (timeouts) count as not accepted. Prints a table and, with ``--json``, writes
every figure and the failures to a file.

    .venv/bin/python bench/grader_accuracy.py [--gsm8k PATH] [--math500 PATH] [--json out.json]
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


# -- running --------------------------------------------------------------------------------------


def load_references(path: Path) -> list[object]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["answer"] for line in f if line.strip()]


def run_set(
    name: str, references: list[object], pool: VerifierPool, progress: Callable[[str], None]
) -> dict[str, object]:
    cases = list(cases_for(references))
    progress(f"{name}: {len(references)} references, {len(cases)} verifications")
    started = time.perf_counter()
    verdicts = pool.verify_many([("math", response, ref) for _, response, ref in cases])
    elapsed = time.perf_counter() - started
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    failures: dict[str, list[dict[str, object]]] = defaultdict(list)
    for (category, response, reference), verdict in zip(cases, verdicts, strict=True):
        must_accept = not category.startswith("wrong")
        accepted = verdict.correct is True
        totals[category][0] += 1
        totals[category][1] += accepted
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
        "categories": {k: {"n": n, "accepted": a} for k, (n, a) in sorted(totals.items())},
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
    print(f"{'category':<24} {'n':>7} {'accepted':>9} {'rate':>8}")
    for category, c in result["categories"].items():  # type: ignore[attr-defined]
        rate = c["accepted"] / c["n"]
        print(f"{category:<24} {c['n']:>7} {c['accepted']:>9} {100 * rate:>7.2f}%")
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
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="Write all figures here.")
    args = parser.parse_args()

    results = []
    with VerifierPool(processes=args.processes, timeout_s=10.0) as pool:
        if not pool.wait_ready(120):
            raise SystemExit("verifier workers did not start")
        for name, path in (("gsm8k", args.gsm8k), ("math500", args.math500)):
            result = run_set(name, load_references(path), pool, lambda m: print(m, flush=True))
            result["path"] = str(path)
            print_table(result)
            results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
