"""Drift arithmetic (numpy and scipy, no Django): summarise reference values once, then
score a window of live values against the summary.

- Kind of a column: categorical if the signature types it string/boolean/binary, or if any
  reference value is not a number, or if its numbers are all whole with at most
  CATEGORICAL_MAX_DISTINCT distinct values (a code, a small count); numeric otherwise.
- PSI (every column): numeric columns in PSI_BINS bins cut at the reference's quantiles
  (open-ended outer bins; edges between reference values), categorical ones per reference
  category plus one bin for the categories it never had; shares floored at EPSILON so an
  empty bin is not infinite.
  PSI = Σ (live - ref) · ln(live / ref). Status: < 0.1 ok, < 0.25 warn, else drift.
- KS (numeric): scipy's two-sample Kolmogorov-Smirnov test of the live values against a
  sorted reference sample (at most KS_SAMPLE quantiles of the reference).
- Chi-squared (categorical): scipy's goodness-of-fit test of the live counts per bin
  against the reference shares.
Every function works on whole columns at once (numpy), never value by value in Python."""

import math

import numpy
import pandas
from scipy import stats

NUMERIC, CATEGORICAL = "numeric", "categorical"
PSI_BINS = 10
EPSILON = 1e-4
KS_SAMPLE = 2000
CATEGORICAL_MAX_DISTINCT = 10
MAX_CATEGORIES = 50  # the most frequent; the rest share the "other" bin
PSI_WARN, PSI_DRIFT = 0.1, 0.25
TEST_P_VALUE = 0.05  # a KS or chi-squared row below it says "drift" (for reading only)
CATEGORICAL_TYPES = {"string", "boolean", "binary", "str", "bool"}


def status(psi: float) -> str:
    """ok, warn or drift, from a PSI value (the DriftStatus values)."""
    return "ok" if psi < PSI_WARN else "warn" if psi < PSI_DRIFT else "drift"


def summarise(name: str, values, declared_type: str = "") -> dict:
    """The summary a column is scored against (JSON-ready)."""
    values = numpy.asarray(values, dtype=object)
    numbers = as_numbers(values)
    kind = column_kind(values, numbers, declared_type)
    if kind == NUMERIC:
        known = numbers[~numpy.isnan(numbers)]
        edges = bin_edges(known)
        shares = _shares(numpy.searchsorted(edges, known, side="right"), len(edges) + 1)
        sample = numpy.quantile(known, numpy.linspace(0, 1, min(KS_SAMPLE, len(known))))
        return {"name": name, "kind": kind, "edges": edges.tolist(), "shares": shares.tolist(),
                "sample": sample.tolist()}  # fmt: skip
    codes, uniques = pandas.factorize(values)  # missing values get code -1: left out
    labels = pandas.Series([_label(u) for u in uniques], dtype=object)
    counts = pandas.Series(numpy.bincount(codes[codes >= 0], minlength=len(uniques)))
    totals = counts.groupby(labels.values).sum().sort_values(ascending=False, kind="stable")
    categories = [str(label) for label in totals.index[:MAX_CATEGORIES]]
    index = _category_index(values[codes >= 0], categories)
    shares = _shares(index, len(categories) + 1)
    return {"name": name, "kind": kind, "categories": categories, "shares": shares.tolist()}


def bin_edges(known) -> numpy.ndarray:
    """Inner PSI bin edges at the reference's deciles, each moved to the midpoint between
    the reference values around it: a value the reference holds many times (1.4, 1.5)
    falls wholly in one bin, so live values a hair either side of it land in the same one."""
    distinct = numpy.unique(known)
    if len(distinct) < 2:
        return distinct
    quantiles = numpy.quantile(known, numpy.linspace(0, 1, PSI_BINS + 1)[1:-1])
    above = numpy.clip(numpy.searchsorted(distinct, quantiles, side="right"), 1, len(distinct) - 1)
    return numpy.unique((distinct[above - 1] + distinct[above]) / 2)


def column_kind(values, numbers, declared_type: str = "") -> str:
    """numeric or categorical (the rules in the module's docstring); missing values (None,
    NaN: an empty CSV cell) do not count either way."""
    if declared_type.lower() in CATEGORICAL_TYPES:
        return CATEGORICAL
    missing = sum(_missing(v) for v in values)
    if int(numpy.isnan(numbers).sum()) > missing:
        return CATEGORICAL  # some value is text (or a boolean)
    known = numbers[~numpy.isnan(numbers)]
    if not len(known):
        return CATEGORICAL
    whole = numpy.all(known == numpy.round(known))
    if whole and len(numpy.unique(known)) <= CATEGORICAL_MAX_DISTINCT:
        return CATEGORICAL
    return NUMERIC


def score(summary: dict, values) -> dict:
    """{"psi", "status", "test" ("ks"/"chi2"), "statistic", "p_value", "rows"} of live
    `values` against `summary`; None if no value can be compared."""
    if not isinstance(values, numpy.ndarray):
        values = numpy.asarray(values, dtype=object)
    if summary["kind"] == NUMERIC:
        numbers = as_numbers(values)
        numbers = numbers[~numpy.isnan(numbers)]
        if not len(numbers):
            return None
        edges = numpy.asarray(summary["edges"])
        counts = numpy.bincount(
            numpy.searchsorted(edges, numbers, side="right"), minlength=len(edges) + 1
        )
        test = stats.ks_2samp(numbers, numpy.asarray(summary["sample"]), method="asymp")
        return _result(summary, counts, "ks", test.statistic, test.pvalue)
    index = _category_index(values, summary["categories"])
    counts = numpy.bincount(index, minlength=len(summary["categories"]) + 1)
    expected = _floored(numpy.asarray(summary["shares"])) * counts.sum()
    test = stats.chisquare(counts, expected)
    return _result(summary, counts, "chi2", test.statistic, test.pvalue)


def _result(summary, counts, test, statistic, p_value) -> dict:
    live = _floored(counts / counts.sum())
    reference = _floored(numpy.asarray(summary["shares"]))
    value = float(numpy.sum((live - reference) * numpy.log(live / reference)))
    return {"psi": value, "status": status(value), "test": test,
            "statistic": _finite(statistic), "p_value": _finite(p_value),
            "rows": int(counts.sum())}  # fmt: skip


def as_numbers(values) -> numpy.ndarray:
    """Floats, NaN where a value is not a number (text, None, a boolean)."""
    try:
        return numpy.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return numpy.fromiter(
            (v if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
             for v in values),
            dtype=float, count=len(values),
        )  # fmt: skip


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label(value) -> str:
    """A value as the text of the category it names (1 and 1.0 are one category)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _category_index(values, categories) -> numpy.ndarray:
    """The bin of each value: its category's position, or len(categories) ("other", also
    for a missing value). pandas.factorize hashes the values once (C speed); only the
    distinct ones are labelled in Python."""
    other = len(categories)
    position = {label: i for i, label in enumerate(categories)}
    codes, uniques = pandas.factorize(values)
    mapped = numpy.array([position.get(_label(u), other) for u in uniques] + [other], dtype=int)
    return mapped[codes]  # code -1 (missing) picks the last entry: "other"


def _shares(bins, count) -> numpy.ndarray:
    return numpy.bincount(bins, minlength=count) / max(len(bins), 1)


def _floored(shares) -> numpy.ndarray:
    floored = numpy.maximum(shares, EPSILON)
    return floored / floored.sum()


def _finite(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
