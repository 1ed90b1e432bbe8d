"""bench.records.power: the Hanley & McNeil SE, the required n's direction, the empirical check's power."""

import math

import pytest

from bench.records import power


def test_hanley_mcneil_se_by_hand():
    # A = 0.9, 50 good / 50 defective: Q1 = 0.9/1.1, Q2 = 1.62/1.9
    a, q1, q2 = 0.9, 0.9 / 1.1, 2 * 0.81 / 1.9
    var = (a * (1 - a) + 49 * (q1 - a * a) + 49 * (q2 - a * a)) / 2500
    assert power.hanley_mcneil_se(0.9, 50, 50) == pytest.approx(math.sqrt(var), rel=1e-12)
    assert power.hanley_mcneil_se(0.9, 50, 50) == pytest.approx(0.0321, abs=5e-4)


def test_required_n_falls_with_auroc_and_correlation():
    for z in power.CRITERIA.values():
        by_level = [power.required_n(level, 0.5, z)["n"] for level in (0.7, 0.8, 0.9)]
        assert by_level[0] > by_level[1] > by_level[2]
        by_r = [power.required_n(0.8, r, z)["n"] for r in (0.0, 0.3, 0.5)]
        assert by_r[0] > by_r[1] > by_r[2]
    assert power.required_n(0.8, 0.5, power.CRITERIA["power80"])["n"] > power.required_n(
        0.8, 0.5, power.CRITERIA["resolvable"])["n"]
    found = power.required_n(0.8, 0.5, 1.96)
    good, bad = power.ratio()
    assert found["n_good"] * bad == found["n_defective"] * good
    assert 1.96 * found["se_diff"] <= power.DIFFERENCE + 1e-4


def test_empirical_rejection_rate_rises_with_n():
    small = power.simulate(0.8, 20, 30, reps=40, resamples=100, seed=1)["excluding_zero"]
    large = power.simulate(0.8, 240, 360, reps=40, resamples=100, seed=1)["excluding_zero"]
    assert large > small + 0.2
