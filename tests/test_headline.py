"""The headline over training seeds (maskad_core.study.seeds, maskad_core.study.headline): statistics, the one
comparison rule, and tables a page can show (no NaN, None or raw booleans)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maskad_core.metrics import (
    image_auroc,
    mean_auroc_interval,
    seeds_auroc_difference_interval,
    seeds_auroc_interval,
    seeds_mean_auroc_interval,
)
from maskad_core.study import headline, seeds
from maskad_core.study.seeds import MEAN, DetectorResult, SeedStatistic
from maskad_core.training.config import TrainConfig


def _frames(n_seeds: int = 3, n: int = 40, shift: float = 1.0, seed: int = 0) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n // 2), np.ones(n // 2)].astype(int)
    out = []
    for s in range(n_seeds):
        rows = []
        for category, strength in (("alpha", shift), ("beta", shift / 2)):
            noise = rng.normal(size=n)
            rows.append(pd.DataFrame({
                "path": [f"{category}/{i:03d}.png" for i in range(n)], "category": category,
                "label": labels, "score_max": noise + strength * labels,
                "score_eq1": noise + 0.1 * labels}))
        out.append(pd.concat(rows).sample(frac=1.0, random_state=s))  # each run in its own order
    return out


def test_arm_statistics_are_the_seeds_aurocs_their_mean_and_spread():
    frames = _frames()
    stats = seeds.arm_statistics(frames, "score_max")
    assert set(stats) == {"alpha", "beta", MEAN}
    for category in ("alpha", "beta"):
        expected = []
        for frame in frames:
            part = frame[frame.category == category]
            expected.append(image_auroc(part.label.to_numpy(), part.score_max.to_numpy()))
        assert stats[category].seeds == pytest.approx(expected)
        assert stats[category].mean == pytest.approx(np.mean(expected))
        assert stats[category].std == pytest.approx(np.std(expected, ddof=1))
        low, high = stats[category].interval
        assert low < stats[category].mean < high
    per_seed = np.mean([stats["alpha"].seeds, stats["beta"].seeds], axis=0)
    assert stats[MEAN].seeds == pytest.approx(per_seed)
    assert stats["alpha"].mean > stats["beta"].mean  # the stronger shift ranks higher


def test_runs_that_scored_other_images_are_refused():
    frames = _frames(2)
    frames[1] = frames[1].assign(path=frames[1]["path"] + "x")
    with pytest.raises(ValueError, match="same test images"):
        seeds.arm_statistics(frames, "score_max")


def test_the_mean_interval_over_seeds_reduces_to_the_one_seed_interval():
    rng = np.random.default_rng(3)
    groups = [(np.r_[np.zeros(25), np.ones(25)].astype(int), rng.normal(size=50) + np.r_[np.zeros(25), np.ones(25)])
              for _ in range(2)]
    one = mean_auroc_interval(groups)
    assert seeds_mean_auroc_interval([(labels, scores[None]) for labels, scores in groups]) == pytest.approx(one)
    twice = seeds_mean_auroc_interval([(labels, np.stack([scores, scores])) for labels, scores in groups])
    assert twice == pytest.approx(one)  # two identical seeds: the same test-image noise


def _stat(values, interval=(0.0, 1.0)) -> SeedStatistic:
    return SeedStatistic.of(values, interval)


def test_compare_uses_the_seed_spread_or_with_one_seed_the_intervals():
    narrow_high, narrow_low = (0.78, 0.84), (0.68, 0.74)
    assert headline.compare(_stat([0.80, 0.82, 0.81], narrow_high), _stat([0.70, 0.72, 0.71], narrow_low)) == "higher"
    # the intervals separate but the seeds scatter: level
    assert headline.compare(_stat([0.70, 0.90, 0.80], (0.77, 0.83)), _stat([0.75, 0.76, 0.77], (0.70, 0.76))) == "level"
    assert headline.compare(_stat([0.60, 0.61, 0.62], (0.55, 0.66)), 0.80) == "lower"  # a number: its own interval
    assert headline.compare(_stat([0.80, 0.81, 0.82], narrow_high), DetectorResult(0.70, (0.6, 0.75), np.nan)) == "higher"
    assert headline.compare(_stat([0.80, 0.81, 0.82], narrow_high), DetectorResult(0.70, (0.6, 0.8), np.nan)) == "level"
    # seeds that agree do not make a word alone: the test images' intervals must separate too
    agreeing = _stat([0.471, 0.471, 0.472], (0.406, 0.537))
    assert headline.compare(agreeing, _stat([0.465, 0.465, 0.466], (0.40, 0.53))) == "level"
    assert headline.compare(agreeing, _stat([0.300, 0.300, 0.301], (0.25, 0.35))) == "higher"
    # one seed: the 95% intervals decide, and overlap is "level"
    assert headline.compare(_stat([0.9], (0.85, 0.95)), _stat([0.7], (0.6, 0.8))) == "higher"
    assert headline.compare(_stat([0.9], (0.75, 0.95)), _stat([0.7], (0.6, 0.8))) == "level"


def test_numbers_for_a_page_have_no_nan_none_or_booleans():
    assert headline.number(float("nan")) == headline.DASH
    assert headline.number(None) == headline.DASH
    assert headline.number(True) == "yes" and headline.number(np.bool_(False)) == "no"
    assert headline.number(0.98765) == "0.988"
    assert headline.mean_std(_stat([0.9, 0.8])) == "0.850 ± 0.071"
    assert headline.mean_std(_stat([0.9])) == "0.900"
    assert headline.mean_std(None) == headline.DASH


def _headline(categories=("bottle", "gadget")) -> headline.Headline:
    def arm(base):
        out = {c: _stat([base + 0.01 * i, base + 0.01 * i + 0.02, base + 0.01 * i + 0.01], (base - 0.03, base + 0.05))
               for i, c in enumerate(categories)}
        out[MEAN] = _stat([base, base + 0.01, base + 0.02], (base - 0.05, base + 0.05))
        return out

    detectors = {"gaussian": {c: DetectorResult(0.975, (0.96, 0.99), 0.9) for c in categories},
                 "brightness": {c: DetectorResult(0.5, (0.4, 0.6), np.nan) for c in categories}}
    return headline.Headline(
        config=TrainConfig(), seeds=[0, 1, 2], n_test={c: 50 for c in categories},
        ours=arm(0.90), ours_eq1=arm(0.65), random=arm(0.70),
        pixel={"bottle": _stat([0.7, 0.71, 0.72])}, random_pixel={"bottle": _stat([0.6, 0.6, 0.61])},
        detectors=detectors)


def test_table1_shows_both_scores_labelled_and_the_paper_only_where_comparable():
    h = _headline()
    frame = headline.table1_frame(h, comparable=True)
    assert {"ours: default score", "ours: eq. 1 (paper's score)"} <= set(frame.columns)
    assert frame.loc["bottle", "paper (Table 1)"] == "0.993"  # the paper's printed bottle row
    assert frame.loc["gadget", "paper (Table 1)"] == "outside the paper"
    assert frame.loc["bottle", "complementary vs random"] == "higher"
    cells = {str(v) for v in frame.to_numpy().ravel()}
    assert not cells & {"nan", "NaN", "None", "True", "False"}
    generated = headline.table1_frame(h, comparable=False)
    assert "paper (Table 1)" not in generated.columns  # no row comparable: no column of dashes


def test_floor_and_glue_values_apply_the_rule_and_name_the_scores():
    h = _headline()
    floors = headline.floor_frame(h)
    assert floors.loc["bottle", "best detector"] == "gaussian"
    assert floors.loc["bottle", "ours vs best"] == "lower"  # 0.90-0.92 [0.87, 0.95] against 0.975 [0.96, 0.99]
    values = headline.glue_values(h, comparable=True)
    assert values["t1_floor_lower"] == 2 and values["t1_floor_higher"] == 0
    assert values["t1_bottle_verdict"] == headline.compare(h.ours["bottle"], h.random["bottle"])
    assert values["t1_bottle_vs_paper"] == "lower"
    assert values["t1_pixel_categories"] == 1  # only bottle has masks
    assert values["t1_n_seeds"] == 3 and values["t1_seeds_list"] == "0, 1, 2"
    statement = values["t1_gap_statement"]
    assert "default score" in statement and "eq. 1" in statement and "bottle" in statement
    assert "gadget" not in statement  # outside the paper: no gap stated
    for name, value in values.items():  # plain Python values: they read back as numbers
        assert type(value) in (int, float, str), (name, type(value))
    control = headline.glue_values(h, comparable=True, prefix="t1c")
    assert "t1c_bottle_mean" in control and not any(k.startswith("t1_") for k in control)


def test_a_paired_difference_resolves_what_two_overlapping_intervals_cannot():
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40), np.ones(40)].astype(bool)
    hardness = rng.normal(size=80) + labels * 0.8        # what both arms share: which images are hard
    better = np.stack([hardness + labels * 0.3 + rng.normal(0, 0.05, 80) for _ in range(3)])
    worse = np.stack([hardness + rng.normal(0, 0.05, 80) for _ in range(3)])
    a_low, a_high = seeds_auroc_interval(labels, better)
    b_low, b_high = seeds_auroc_interval(labels, worse)
    assert a_low < b_high  # the two intervals overlap ...
    low, high = seeds_auroc_difference_interval([(labels, better, worse)])
    assert low > 0  # ... but the paired difference excludes zero
    assert seeds_auroc_difference_interval([(labels, worse, worse)]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="seeds, 80"):
        seeds_auroc_difference_interval([(labels, better[:, :10], worse)])


def test_compare_uses_the_paired_difference_where_it_is_given():
    first = _stat([0.80, 0.81, 0.82], (0.70, 0.90))
    second = _stat([0.70, 0.71, 0.72], (0.60, 0.80))
    assert headline.compare(first, second) == "level"  # the intervals overlap
    assert headline.compare(first, second, (0.04, 0.16)) == "higher"
    assert headline.compare(first, second, (-0.01, 0.16)) == "level"
    assert headline.compare(second, first, (-0.16, -0.04)) == "lower"
    # the spread must still separate
    assert headline.compare(_stat([0.70, 0.90, 0.80], (0.7, 0.9)), second, (0.04, 0.16)) == "level"
    # one seed: the difference alone
    assert headline.compare(_stat([0.8], (0.7, 0.9)), _stat([0.7], (0.6, 0.8)), (0.02, 0.1)) == "higher"


def test_paired_differences_per_category_and_for_the_mean():
    rng = np.random.default_rng(1)
    rows = []
    for category in ("a", "b"):
        for i in range(30):
            rows.append({"path": f"{category}/{i}.png", "category": category, "label": int(i >= 15),
                         "base": rng.normal() + (i >= 15)})
    base = pd.DataFrame(rows)
    strong = [base.assign(score_max=base["base"] + base["label"] * 2.0) for _ in range(2)]
    weak = [base.assign(score_max=base["base"]) for _ in range(2)]
    out = seeds.paired_differences(strong, weak, "score_max")
    assert set(out) == {"a", "b", MEAN}
    assert all(low > 0 for low, _ in out.values())
    assert seeds.paired_differences(weak, weak, "score_max")["a"] == (0.0, 0.0)
