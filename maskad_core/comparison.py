"""The study's comparison words, computed from intervals or seed spreads, never from a tolerance:
:func:`interval_verdict` (two 95% intervals) and :func:`spread_verdict` (SPREAD_RULE, over training
seeds); maskad_core.headline applies them to the book's tables.
"""

from __future__ import annotations

import numpy as np


def format_interval(interval) -> str:
    """"[0.912, 0.987]", or "-" where there is none (a mean row, or one class only)."""
    if not isinstance(interval, (list, tuple)) or not all(np.isfinite(interval)):
        return "-"
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def interval_verdict(first, second) -> str:
    """"higher" or "lower" when two 95% intervals do not overlap, else "not resolved"."""
    if not all(isinstance(i, (list, tuple)) and all(np.isfinite(i)) for i in (first, second)):
        return "-"
    if first[0] > second[1]:
        return "higher"
    if first[1] < second[0]:
        return "lower"
    return "not resolved"


# The study's rule for a comparative word between two detectors measured over training seeds (a
# training-free detector has one value and no spread): "higher" when the first one's seed mean
# minus its seed standard deviation lies above the second one's mean plus its standard deviation,
# "lower" the other way round, otherwise "level". Stated once, applied by code, quoted by the book.
SPREAD_RULE = ("higher (or lower) beyond the seed spread: the mean minus one standard deviation over "
               "training seeds of one lies above the mean plus one standard deviation of the other; "
               "otherwise level")


def spread_verdict(first, second) -> str:
    """"higher", "lower" or "level" by SPREAD_RULE; each argument is a number or the values over
    seeds (at least two values give a spread, ddof 1)."""
    def centre_and_spread(values):
        values = np.atleast_1d(np.asarray(values, dtype=float))
        return values.mean(), (values.std(ddof=1) if values.size > 1 else 0.0)

    (a, a_spread), (b, b_spread) = centre_and_spread(first), centre_and_spread(second)
    if not (np.isfinite(a) and np.isfinite(b)):
        return "-"
    if a - a_spread > b + b_spread:
        return "higher"
    if a + a_spread < b - b_spread:
        return "lower"
    return "level"
