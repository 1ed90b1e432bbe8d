"""The headline budget's rule on made-up curves: it names the epoch the rule says."""

import pytest

from maskad_core.study.budget_rule import curve_shape, learned_budget


def _curve(errors):
    return list(zip([1, 2, 5, 10, 20, 50, 100, 200], errors, strict=False))


def test_the_fewest_epochs_within_the_tolerance_of_the_final_error_for_every_seed():
    seed0 = _curve([1.0, 0.6, 0.3, 0.2, 0.13, 0.11, 0.105, 0.10])
    seed1 = _curve([1.0, 0.6, 0.3, 0.2, 0.13, 0.118, 0.105, 0.10])
    assert learned_budget({0: seed0}, 0.1)["epochs"] == 50  # 0.11 <= 0.10 * 1.1
    both = learned_budget({0: seed0, 1: seed1}, 0.1)
    assert both["epochs"] == 100 and both["settled"]  # seed 1's 0.118 at 50 is not within 10%
    assert learned_budget({0: seed0}, 0.4)["epochs"] == 20  # 0.13 <= 0.14


def test_a_curve_still_falling_names_its_last_epoch_and_says_it_had_not_settled():
    falling = _curve([1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05])
    result = learned_budget({0: falling}, 0.05)
    assert result == {**result, "epochs": 200, "settled": False, "final_epoch": 200}


def test_only_epochs_every_seed_kept_count():
    short = [(1, 1.0), (2, 0.5), (5, 0.5)]
    long = [(1, 1.0), (2, 0.5), (5, 0.5), (10, 0.1)]
    assert learned_budget({0: short, 1: long}, 0.05)["epochs"] == 2


def test_bad_curves_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="at least one seed"):
        learned_budget({})
    with pytest.raises(ValueError, match="share no epoch"):
        learned_budget({0: [(1, 1.0)], 1: [(2, 1.0)]})
    with pytest.raises(ValueError, match="seed 0"):
        learned_budget({0: [(1, float("nan"))]})
    with pytest.raises(ValueError, match="tolerance"):
        learned_budget({0: [(1, 1.0)]}, tolerance=2)


def test_the_shape_of_a_curve_is_read_from_its_tail():
    assert curve_shape([(1, 0.5), (2, 0.6), (5, 0.7), (10, 0.8)]) == "still rising"
    assert curve_shape([(1, 0.5), (2, 0.8), (5, 0.805), (10, 0.8)]) == "flat"
    assert curve_shape([(1, 0.9), (2, 0.8), (5, 0.7)]) == "falling"
    assert curve_shape([(1, 0.9)]) == "too short to say"
