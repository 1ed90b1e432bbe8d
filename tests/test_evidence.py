"""bench.records.evidence: verdicts come from the spread rule applied to the recorded seeds, and the report
shows every arm, every detector and every check. No AUROC level of a real run is asserted."""

from bench.records.evidence import markdown_real, verdicts


def _entry(values, ci=(0.5, 0.9)):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"seeds": values, "mean": mean, "std": std, "ci": list(ci)}


def _arm(screw, bottle):
    return {"seeds": [0, 1, 2], "runs": [], "train_minutes": [1.0, 1.0, 1.0],
            "per_category": {name: {"auroc": _entry(v), "eq1": _entry([0.5, 0.5, 0.5]),
                                    "features": _entry([x - 0.1 for x in v]), "pixel_auroc": 0.9}
                             for name, v in (("screw", screw), ("bottle", bottle))}}


def _detector(method, control, screw, bottle):
    return {"method": method, "control": control, "seconds": 1.0,
            "per_category": {"screw": {"auroc": screw, "ci": [screw - 0.1, screw + 0.1],
                                       "pixel_auroc": float("nan")},
                             "bottle": {"auroc": bottle, "ci": [bottle - 0.05, bottle + 0.05],
                                        "pixel_auroc": 0.9}}}


def _result():
    arms = {"complementary|none": _arm([0.70, 0.72, 0.74], [0.97, 0.98, 0.99]),
            "random|none": _arm([0.60, 0.61, 0.62], [0.97, 0.98, 0.99]),
            "complementary|per_image": _arm([0.81, 0.83, 0.85], [0.96, 0.97, 0.98]),
            "random|per_image": _arm([0.70, 0.72, 0.74], [0.96, 0.97, 0.98])}
    detectors = {f"{m}|{c}": _detector(m, c, s, b) for m, c, s, b in (
        ("gaussian", "none", 0.40, 0.98), ("patch_nn", "none", 0.85, 0.83),
        ("gaussian", "per_image", 0.52, 0.98), ("patch_nn", "per_image", 0.47, 0.84))}
    return {"profile": "real", "rule": "the rule", "arms": arms, "detectors": detectors,
            "two_by_two": {"complementary": {"complementary": 0.8, "random": 0.7},
                           "random": {"random": 0.75, "complementary": 0.72}},
            "curve": [{"epoch": 1, "minutes": 0.5, "image_auroc": 0.6,
                       "per_category": {"screw": 0.5, "bottle": 0.7}}],
            "paper": {"screw": 0.804, "bottle": 0.993}}


def test_verdicts_follow_the_spread_rule_against_the_best_detector_and_the_margin():
    result = _result()
    checks = {c["check"]: c for c in verdicts(result)}
    # without the control the best detector on screw is patch_nn (0.85): ours 0.72 +- 0.02 is lower
    assert checks["screw, control none: ours (default score) vs the best training-free detector "
                  "(patch_nn)"]["verdict"] == "lower"
    # under the control the best is gaussian (0.52): ours 0.83 +- 0.02 is higher
    assert checks["screw, control per_image: ours (default score) vs the best training-free "
                  "detector (gaussian)"]["verdict"] == "higher"
    margin = checks["screw, control none: complementary >= random + 0.05"]
    assert margin["verdict"] == "higher" and abs(margin["gap"] - 0.11) < 1e-9
    assert checks["bottle, control none: complementary >= random + 0.05"]["verdict"] == "lower"
    assert checks["screw under the control >= 0.8"]["verdict"] == "higher"


def test_the_books_rule_also_needs_the_intervals_to_separate():
    result = _result()
    checks = {c["check"]: c for c in verdicts(result)}
    under_control = checks["screw, control per_image: ours (default score) vs the best training-free "
                           "detector (gaussian)"]
    # 0.83 +- 0.02 against 0.52 separates by the spread, but [0.5, 0.9] overlaps [0.42, 0.62]
    assert under_control["verdict"] == "higher" and under_control["book_verdict"] == "level"
    result["arms"]["complementary|per_image"]["per_category"]["screw"]["auroc"]["ci"] = [0.78, 0.88]
    checks = {c["check"]: c for c in verdicts(result)}
    assert checks["screw, control per_image: ours (default score) vs the best training-free "
                  "detector (gaussian)"]["book_verdict"] == "higher"
    # a threshold is its own interval: 0.83 [0.78, 0.88] against 0.80 does not separate
    assert checks["screw under the control >= 0.8"]["book_verdict"] == "level"
    # the masking margin: overlapping intervals, but the paired difference (less the margin) decides
    margin = "screw, control none: complementary >= random + 0.05"
    assert checks[margin]["verdict"] == "higher" and checks[margin]["book_verdict"] == "level"
    result["masking_difference"] = {"none": {"screw": [0.07, 0.15]}}
    assert {c["check"]: c for c in verdicts(result)}[margin]["book_verdict"] == "higher"
    result["masking_difference"] = {"none": {"screw": [0.03, 0.15]}}  # 0.03 - 0.05 < 0
    assert {c["check"]: c for c in verdicts(result)}[margin]["book_verdict"] == "level"


def test_the_report_shows_every_arm_detector_and_check():
    result = _result()
    result["checks"] = verdicts(result)
    text = "\n".join(markdown_real(result))
    rows = [line for line in text.splitlines() if line.startswith("| screw | ")]
    assert len(rows) == 4 and "| patch_nn | per_image |" in text  # one row per arm
    assert "0.720 ± 0.020 [0.500, 0.900]" in text  # mean ± seed std, then the interval
    assert "encoder-token NN (beyond the paper)" in text and "the rule" in text
    assert "by the book's rule" in text
    result["masking_difference"] = {"none": {"screw": [0.07, 0.15]}}
    assert "paired difference" in "\n".join(markdown_real(result)) and "screw [0.070, 0.150]" in "\n".join(markdown_real(result))
    for check in result["checks"]:
        assert check["check"] in text


def _frames(shift_defective, seeds=2, n=40):
    """Per-seed score frames of one category: defective images scored ``shift_defective`` higher."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    return [pd.DataFrame({"path": [f"img{i:03d}" for i in range(n)], "category": "screw", "label": labels,
                          "score_max": rng.normal(size=n) + shift_defective * labels})
            for _ in range(seeds)]


def test_the_2x2_paired_intervals_answer_its_two_questions_separately():
    from bench.records.evidence import two_by_two_paired

    # test views matter, training masks do not: complementary views separate, random views do not
    good, none = _frames(3.0), _frames(0.0)
    frames = {("complementary", "complementary"): good, ("complementary", "random"): none,
              ("random", "complementary"): good, ("random", "random"): none}
    paired = two_by_two_paired(frames, "score_max")
    for trained in ("complementary", "random"):
        low, high = paired["test_views"][trained]["mean"]
        assert low > 0, (trained, low, high)  # complementary views minus random views
    for tested in ("complementary", "random"):
        low, high = paired["training"][tested]["screw"]
        assert low <= 0 <= high  # the same frames on both sides: no difference
    assert set(paired) == {"test_views", "training"}


def test_the_report_shows_the_2x2_paired_intervals_when_recorded():
    result = _result()
    result["checks"] = verdicts(result)
    assert "paired differences" not in "\n".join(markdown_real(result))
    interval = {"mean": [0.01, 0.2], "screw": [0.0, 0.3]}
    result["two_by_two_paired"] = {"test_views": {"complementary": interval, "random": interval},
                                   "training": {"complementary": interval, "random": interval}}
    text = "\n".join(markdown_real(result))
    assert "trained random, complementary minus random views [0.010, 0.200]" in text
