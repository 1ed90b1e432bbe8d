"""study.verdict on made-up records: each claim gets the verdict its numbers call for, the masking
claim is split in two, and no interval means no verdict on a difference."""

from maskad_core.study import verdict as v


def _entry(values, ci):
    mean = sum(values) / len(values)
    std = (sum((x - mean) ** 2 for x in values) / (len(values) - 1)) ** 0.5
    return {"seeds": list(values), "mean": mean, "std": std, "ci": list(ci)}


def _section(bottle_eq1, bottle_default, screw_eq1=(0.2, 0.21, 0.22), two_by_two=None, paired=None):
    per_category = {
        "bottle": {"eq1": _entry(bottle_eq1, (min(bottle_eq1) - 0.05, max(bottle_eq1) + 0.05)),
                   "auroc": _entry(bottle_default, (min(bottle_default) - 0.05, max(bottle_default) + 0.05))},
        "screw": {"eq1": _entry(screw_eq1, (0.1, 0.3)), "auroc": _entry((0.70, 0.71, 0.72), (0.6, 0.8))}}
    section = {
        "kind": "real", "config": {"epochs": 2, "image_size": 128, "categories": ["bottle", "screw"]},
        "machine": {"cores": 2},
        "arms": {"complementary|none": {"seeds": [0, 1, 2], "train_minutes": [0.5, 0.8, 0.6],
                                        "per_category": per_category}},
        "detectors": {"nn|none": {"method": "nn", "control": "none", "per_category": {
                          "bottle": {"auroc": 0.99, "ci": [0.97, 1.0]}, "screw": {"auroc": 0.4, "ci": [0.3, 0.5]}}},
                      "brightness|none": {"method": "brightness", "control": "none", "per_category": {
                          "bottle": {"auroc": 0.5, "ci": [0.4, 0.6]}, "screw": {"auroc": 0.001, "ci": [0, 0.004]}}}},
        "two_by_two": two_by_two or {"complementary": {"complementary": 0.79, "random": 0.69,
                                                       "complementary_std": 0.01, "random_std": 0.002},
                                     "random": {"complementary": 0.81, "random": 0.69,
                                                "complementary_std": 0.005, "random_std": 0.007}}}
    if paired is not None:
        section["two_by_two_paired"] = paired
    return section


def _by_claim(verdicts, word):
    return next(x for x in verdicts if word in x.claim)


def test_a_number_below_the_papers_by_both_scores_is_not_reproduced_for_the_budget():
    found = v.verdicts(_section((0.60, 0.64, 0.68), (0.87, 0.88, 0.89)))
    bottle = _by_claim(found, "bottle")
    assert (bottle.verdict, bottle.reason) == (v.NOT_REPRODUCED, "budget")
    assert "below the training-free detector nn" in bottle.because  # 0.88 against 0.99, intervals apart


def test_eq1_level_with_the_paper_reproduces_and_the_default_alone_is_a_matter_of_score():
    level = _by_claim(v.verdicts(_section((0.97, 0.99, 1.0), (0.5, 0.55, 0.6))), "bottle")
    assert level.verdict == v.REPRODUCED
    default_only = _by_claim(v.verdicts(_section((0.6, 0.62, 0.64), (0.97, 0.99, 1.0))), "bottle")
    assert (default_only.verdict, default_only.reason) == (v.NOT_REPRODUCED, "score")


def test_a_category_of_the_profile_not_in_the_record_and_the_fifteen_category_mean_are_not_testable():
    section = _section((0.6, 0.62, 0.64), (0.8, 0.82, 0.84))
    section["config"]["categories"] = ["bottle", "screw", "transistor"]
    found = v.verdicts(section)
    assert _by_claim(found, "transistor").verdict == v.NOT_TESTABLE
    mean = _by_claim(found, "all 15")
    assert (mean.verdict, mean.reason) == (v.NOT_TESTABLE, "data") and "3 of the 15" in mean.because


def test_the_masking_claim_is_two_claims_and_needs_the_paired_interval():
    views, training = v.masking_verdicts(_section((0.6,) * 3, (0.8,) * 3))
    assert "test time" in views.claim and "training with complementary masks" in training.claim
    assert views.verdict == training.verdict == v.NOT_TESTABLE and views.reason == "interval"
    positive, straddles = {"mean": [0.05, 0.15]}, {"mean": [-0.04, 0.01]}
    paired = {"test_views": {"complementary": positive, "random": positive},
              "training": {"complementary": straddles, "random": straddles}}
    views, training = v.masking_verdicts(_section((0.6,) * 3, (0.8,) * 3), paired)
    assert views.verdict == v.REPRODUCED  # both trained models, interval above 0 and spread apart
    assert training.verdict == v.NOT_REPRODUCED  # the interval includes 0
    # an interval above 0 but seeds that overlap: no word
    overlapping = {"complementary": {"complementary": 0.70, "random": 0.69, "complementary_std": 0.02,
                                     "random_std": 0.02},
                   "random": {"complementary": 0.70, "random": 0.69, "complementary_std": 0.02, "random_std": 0.02}}
    views, _ = v.masking_verdicts(_section((0.6,) * 3, (0.8,) * 3, two_by_two=overlapping), paired)
    assert views.verdict == v.NOT_REPRODUCED


def test_the_screw_confound_says_which_test_images_are_the_odd_ones():
    residue = {"categories": {"screw": {"controls": {"none": {"brightness": {
        "test_good_mean": 0.668, "test_defective_mean": 0.732, "held_out_normal_mean": 0.722}}}}}}
    screw = _by_claim(v.verdicts(_section((0.6,) * 3, (0.8,) * 3), residue=residue), "screw")
    assert "the normal test images are the odd ones" in screw.because
    residue["categories"]["screw"]["controls"]["none"]["brightness"]["test_good_mean"] = 0.720
    residue["categories"]["screw"]["controls"]["none"]["brightness"]["test_defective_mean"] = 0.60
    screw = _by_claim(v.verdicts(_section((0.6,) * 3, (0.8,) * 3), residue=residue), "screw")
    assert "the defective test images are the odd ones" in screw.because


def test_the_budget_in_words_counts_images_seen_against_the_papers():
    text = v.budget_words(_section((0.6,) * 3, (0.8,) * 3), train_images=826, lpips=False)
    assert "2 epochs" in text and "1,652 training images seen" in text and "3.6 million" in text
    assert "0.8 minutes" in text and "without the LPIPS" in text


def test_figure3_is_not_testable_where_chance_meets_it_and_the_box_has_one_line_per_claim():
    section = _section((0.6,) * 3, (0.8,) * 3)
    chance = v.verdicts(section, figure3={"count": 1, "total": 3, "by_chance": 3})[-1]
    assert chance.verdict == v.NOT_TESTABLE and chance.reason == "score"
    decided = v.verdicts(section, figure3={"count": 3, "total": 3, "by_chance": 1})[-1]
    assert decided.verdict == v.REPRODUCED
    box = v.verdict_box(section)
    assert box.count("\n- ") == len(v.verdicts(section))
    assert all(w in box for w in (v.NOT_TESTABLE, v.NOT_REPRODUCED)) and "Untested here" in box
    assert v.verdict_box(None).startswith("*(The evidence record")
