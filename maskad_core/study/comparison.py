"""The study's comparison words, computed from intervals or seed spreads, never from a tolerance:
:func:`interval_verdict` (two 95% intervals), :func:`spread_verdict` (SPREAD_RULE, over training
seeds) and :func:`seeds_verdict` (SEEDS_RULE: both must separate); maskad_core.study.headline applies them
to the book's tables.
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


# The book's rule over several seeds. The spread alone is too loose when the seeds agree (a spread
# of 0.001 would call 0.471 against 0.465 "higher" although the test images cannot tell them apart);
# the test images alone ignore what a new seed would change. A word needs both. Two arms scored by
# this study on the same images are compared by the interval of their paired difference; a
# detector's or a printed number's per-image scores are not kept, so there the intervals must part.
SEEDS_RULE = ("higher (or lower) only when both separate the two: the seed spread (the mean minus "
              "one standard deviation over training seeds of one lies above the mean plus one "
              "standard deviation of the other) and the test images (the 95% bootstrap interval of "
              "the paired difference, both arms scored on the same resampled test images, excludes "
              "zero; against a training-free detector or a printed number, the two 95% intervals do "
              "not overlap); otherwise level")


def difference_verdict(interval) -> str:
    """"higher" or "lower" when the interval of a difference (first minus second) excludes zero,
    else "not resolved"; "-" where there is none."""
    if not isinstance(interval, (list, tuple)) or len(interval) != 2 or not all(np.isfinite(interval)):
        return "-"
    if interval[0] > 0:
        return "higher"
    if interval[1] < 0:
        return "lower"
    return "not resolved"


def seeds_verdict(first, first_interval, second, second_interval, difference=None) -> str:
    """"higher", "lower" or "level" by SEEDS_RULE: ``first`` and ``second`` are numbers or values
    over seeds, each with its 95% interval (a number's interval is the number itself);
    ``difference``, where given, is the 95% interval of the paired difference first minus second,
    and replaces the two intervals' overlap."""
    by_spread = spread_verdict(first, second)
    by_interval = (difference_verdict(difference) if difference is not None
                   else interval_verdict(list(first_interval), list(second_interval)))
    if by_spread == "-" or by_interval == "-":
        return "-"
    return by_spread if by_spread == by_interval else "level"
