"""Reading the compute curve's records for the book: made-up records, the rule's words."""

import json

import pandas as pd

from maskad_core.study import compute_curve


def _record(masking, values, errors, epochs=200, detectors=None):
    points = [{"epoch": e, "held_out_error": {"mean": err},
               "per_category": {"bottle": {"default": v}, "kolektor_sdd": {"default": v}}}
              for e, v, err in zip([1, 2, 5, 10], values, errors, strict=False)]
    return {"masking": masking, "epochs": epochs, "points": points,
            "data": {"categories": ["bottle", "kolektor_sdd"]},
            "detectors": detectors or {"nn": {"bottle": {"auroc": 0.75}, "kolektor_sdd": {"auroc": None}}}}


def test_the_summary_says_the_shape_when_the_curve_clears_the_detector_and_the_gap_to_the_paper():
    frame = compute_curve.curve_summary(_record("complementary", [0.6, 0.7, 0.8, 0.9], [1, 0.5, 0.4, 0.4]))
    bottle = frame.loc["bottle"]
    assert bottle["shape"] == "still rising"
    assert bottle["first epoch above the best floor"] == "5"  # 0.8 > nn's 0.75
    assert bottle["best floor"] == "nn 0.750"
    assert bottle["gap to the paper"] == round(0.9 - 0.993, 3)
    kolektor = frame.loc["kolektor_sdd"]
    assert kolektor["first epoch above the best floor"] == "–" and pd.isna(kolektor["gap to the paper"])
    never = compute_curve.curve_summary(_record("random", [0.6, 0.6, 0.6, 0.6], [1, 1, 1, 1]))
    assert never.loc["bottle", "first epoch above the best floor"] == "not within the run"
    assert never.loc["bottle", "shape"] == "flat"


def test_the_budget_statement_applies_the_rule_and_says_how_far_the_runs_got():
    settled = {"complementary": _record("complementary", [0.6] * 4, [1.0, 0.5, 0.41, 0.40], epochs=10)}
    text = compute_curve.budget_statement(settled)
    assert "gives 5 epochs" in text and "finished their 10 epochs" in text
    falling = {"complementary": _record("complementary", [0.6] * 4, [1.0, 0.8, 0.6, 0.3])}
    text = compute_curve.budget_statement(falling)
    assert "no budget yet" in text and "reached epoch 10 of their 200" in text
    assert compute_curve.budget_statement({}) == "no snapshot has been scored yet"


def test_records_are_found_by_profile_masking_and_seed(tmp_path):
    (tmp_path / "curve-real-random-seed0.json").write_text(json.dumps({"masking": "random"}))
    (tmp_path / "curve-real-random-seed1.json").write_text(json.dumps({"masking": "other"}))
    assert compute_curve.load_curves("real", 0, tmp_path) == {"random": {"masking": "random"}}
    assert compute_curve.load_curves("cpu", 0, tmp_path) == {}


def test_the_floors_are_the_detectors_floors_and_probes_never_set_the_bar():
    from maskad_core.evaluation.detectors import FLOOR_METHODS

    assert compute_curve.FLOORS == FLOOR_METHODS
    record = _record("complementary", [0.6, 0.7, 0.8, 0.9], [1, 0.5, 0.4, 0.4],
                     detectors={"nn": {"bottle": {"auroc": 0.75}}, "brightness": {"bottle": {"auroc": 0.99}}})
    assert compute_curve.best_detector(record, "bottle") == ("nn", 0.75)
    assert compute_curve.curve_summary(record).loc["bottle", "strongest probe"] == "brightness 0.990"
