"""The headline budget: the fewest epochs at which the model has learned the normal images.

Fixed before any test image is scored. A long run keeps its weights at a log-spaced set of epochs
(``training.runs.snapshot_epochs``); each snapshot's reconstruction error (the paper's eq. 1, the
mean squared error of the composed reconstruction) is measured on normal *training* images held
out of that run. The rule reads only those errors:

    the fewest kept epochs at which, for every seed, the held-out error is within ``tolerance``
    (relative) of that seed's error at the last kept epoch.

A curve that still falls at its end gives the last epoch: the run was too short to say more, and
``learned_budget`` says so (``settled``: False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

DEFAULT_TOLERANCE = 0.05  # relative: within 5% of the long run's final held-out error
RULE = ("the fewest kept epochs at which the reconstruction error on held-out normal training images "
        "is within {tolerance:.0%} of the long run's final value, for every seed")


def learned_budget(curves: Mapping[object, Sequence[tuple[int, float]]],
                   tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """``curves``: per seed, (epoch, held-out error) pairs. Returns {"epochs", "settled",
    "tolerance", "rule", "final_epoch"}: the epoch the rule names (only epochs every seed kept
    count), and whether the curve had settled before its last epoch."""
    if not curves:
        raise ValueError("learned_budget needs at least one seed's curve")
    if not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
    by_seed = {}
    for seed, points in curves.items():
        errors = dict(points)
        if not errors:
            raise ValueError(f"seed {seed!r} has no points")
        if any(not (error >= 0) for error in errors.values()):  # NaN fails too
            raise ValueError(f"seed {seed!r}: every held-out error must be a number >= 0")
        by_seed[seed] = errors
    common = sorted(set.intersection(*(set(errors) for errors in by_seed.values())))
    if not common:
        raise ValueError("the seeds' curves share no epoch")
    last = common[-1]
    chosen = next(epoch for epoch in common
                  if all(errors[epoch] <= errors[last] * (1 + tolerance) for errors in by_seed.values()))
    return {"epochs": chosen, "settled": chosen < last, "tolerance": tolerance,
            "rule": RULE.format(tolerance=tolerance), "final_epoch": last}


def curve_shape(points: Sequence[tuple[float, float]], margin: float = 0.01, tail: int = 3) -> str:
    """"still rising", "flat" or "falling": the last ``tail`` points of a (budget, AUROC) curve,
    compared end to start of that tail against ``margin``. Reported, never used to choose."""
    if len(points) < 2:
        return "too short to say"
    ordered = [value for _, value in sorted(points)][-tail:]
    change = ordered[-1] - ordered[0]
    return "still rising" if change > margin else "falling" if change < -margin else "flat"
