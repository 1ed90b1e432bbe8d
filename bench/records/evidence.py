"""The evidence on the real data: does the method detect, and does complementary masking matter?

For a profile that trains one model on every real category (``real``: MVTec AD bottle and screw,
KolektorSDD) it trains, or re-uses, each arm over training seeds: complementary and random masking,
each without and with the control for global brightness and contrast
(``image_standardization=per_image``). It records, per category:

- the default score and the paper's eq. 1: mean over seeds, their standard deviation, and a 95%
  bootstrap interval over test images of the seed mean (``metrics.seeds_auroc_interval``);
- every training-free detector (the floors gaussian, nn, patch_nn; the probes brightness and
  contrast), without and with the control, with its 95% interval over test images;
- the 2x2 of training masking x test masking, over the same seeds;
- the mean image AUROC of the first seed's weight snapshots against training minutes;
- the targets' verdicts by the issue's rule (``comparison.spread_verdict``: beyond the seed spread)
  and, beside them, by the book's stricter rule (``comparison.seeds_verdict``: the spread and the
  95% intervals must both separate).

    python -m bench.records.quality --profiles real --seeds 0,1,2    # calls measure_real (this module)
"""

from __future__ import annotations

import time

import numpy as np

from maskad_core.evaluation.baselines import FLOOR_METHODS, PROBE_METHODS, evaluate_baseline
from maskad_core.evaluation.feature_score import evaluate_feature_nn
from maskad_core.evaluation.run_record import evaluate_run, train_and_evaluate
from maskad_core.study import paper
from maskad_core.study.comparison import SEEDS_RULE, SPREAD_RULE, seeds_verdict, spread_verdict
from maskad_core.study.profiles import load_profile, train_config
from maskad_core.study.seeds import MEAN, arm_statistics, paired_differences

CONTROLS = ("none", "per_image")
MASKINGS = ("complementary", "random")
# The targets of the evidence (issue 19), checked against the measurements.
SCREW_UNDER_CONTROL = 0.80
MASKING_MARGIN = 0.05


def _arm(params, masking: str, control: str, seeds) -> dict:
    """One arm over its seeds: per category the headline and eq. 1 over seeds, with intervals."""
    runs = [train_and_evaluate(train_config(params, seed=seed, masking=masking, image_standardization=control),
                  quiet=True) for seed in seeds]
    reduction = runs[0].config.score_reduction
    frames = [run.scores for run in runs]
    features = [evaluate_feature_nn(run) for run in runs]  # beyond the paper, same weights
    feature_frames = [frame for _, frame in features]
    statistics = {name: arm_statistics(source, column) for name, column, source in (
        ("auroc", f"score_{reduction}", frames), ("eq1", "score_eq1", frames),
        ("features", f"score_{reduction}", feature_frames))}
    per_category = {}
    for category in (c for c in statistics["auroc"] if c != MEAN):
        entry = {name: stats[category].to_dict() for name, stats in statistics.items()}
        entry["pixel_auroc"] = float(np.mean([run.metrics["per_category"][category]["pixel_auroc"]
                                              for run in runs]))
        per_category[category] = entry
    return {"seeds": list(seeds), "runs": [run.id for run in runs],
            "train_minutes": [run.metrics["training"]["wall_time_s"] / 60 for run in runs],
            "per_category": per_category, "_runs": runs}


def two_by_two_paired(frames: dict, column: str) -> dict:
    """The 2x2's two questions, each as 95% bootstrap intervals of a paired difference (both sides
    scored on the same resampled test images; per category and ``MEAN``), from ``frames``:
    {(trained, tested): [per-image score frame of each seed]}.

    ``test_views``: per trained masking, tested with complementary views minus tested with random
    ones (the same weights); ``training``: per test masking, complementary-trained minus
    random-trained (the same test views)."""
    return {"test_views": {trained: {c: list(v) for c, v in paired_differences(
                frames[(trained, "complementary")], frames[(trained, "random")], column).items()}
                for trained in MASKINGS},
            "training": {tested: {c: list(v) for c, v in paired_differences(
                frames[("complementary", tested)], frames[("random", tested)], column).items()}
                for tested in MASKINGS}}


def _two_by_two(arms: dict) -> tuple[dict, dict]:
    """Mean image AUROC (default score) of each trained masking tested with each masking, over
    seeds, and the paired intervals of :func:`two_by_two_paired`."""
    table, frames = {}, {}
    for trained in MASKINGS:
        runs = arms[(trained, "none")]["_runs"]
        other = next(m for m in MASKINGS if m != trained)
        evaluated = [evaluate_run(run, overrides={"test_masking": other}) for run in runs]
        crossed = [metrics["image_auroc"] for metrics, _ in evaluated]
        frames[(trained, trained)] = [run.scores for run in runs]
        frames[(trained, other)] = [scores for _, scores in evaluated]
        own = [run.metrics["image_auroc"] for run in runs]
        table[trained] = {trained: float(np.mean(own)), other: float(np.mean(crossed)),
                          f"{other}_std": float(np.std(crossed, ddof=1)) if len(runs) > 1 else 0.0,
                          f"{trained}_std": float(np.std(own, ddof=1)) if len(runs) > 1 else 0.0}
    column = f"score_{runs[0].config.score_reduction}"
    return table, two_by_two_paired(frames, column)


def curve(run) -> list[dict]:
    """Headline AUROC of each kept snapshot against the training minutes it had had."""
    seconds = np.cumsum([row["seconds"] for row in run.metrics["history"]])
    points = []
    for epoch in run.snapshots():
        metrics, _ = evaluate_run(run, epoch=epoch)
        points.append({"epoch": epoch, "minutes": float(seconds[epoch - 1] / 60),
                       "image_auroc": metrics["image_auroc"],
                       "per_category": {c: v[f"image_auroc_{run.config.score_reduction}"]
                                        for c, v in metrics["per_category"].items()}})
    return points


def _detectors(config) -> dict:
    """Every training-free detector, without and with the control: AUROC (max) and interval."""
    out = {}
    for control in CONTROLS:
        for method in (*FLOOR_METHODS, *PROBE_METHODS):
            started = time.perf_counter()
            evaluation, _ = evaluate_baseline(
                method, config.data_root, config.categories, config.image_size,
                config.max_train_images_per_category, config.max_test_images_per_category,
                non_square=config.non_square, image_standardization=control)
            out[f"{method}|{control}"] = {
                "method": method, "control": control, "seconds": time.perf_counter() - started,
                "per_category": {c: {"auroc": v["image_auroc_max"], "ci": v["image_auroc_max_ci"],
                                     "pixel_auroc": v["pixel_auroc"]}
                                 for c, v in evaluation["per_category"].items()}}
    return out


def _best_detector(detectors: dict, category: str, control: str) -> tuple[str, float, list]:
    """The training-free detector with the highest AUROC on a category under a control: its name,
    AUROC and 95% interval."""
    candidates = {d["method"]: d["per_category"][category] for d in detectors.values()
                  if d["control"] == control}
    name = max(candidates, key=lambda m: candidates[m]["auroc"])
    return name, candidates[name]["auroc"], list(candidates[name]["ci"])


def verdicts(result: dict) -> list[dict]:
    """The targets of the evidence, each with its measured values, its verdict by SPREAD_RULE (the
    issue's) and by SEEDS_RULE (the book's: "book_verdict")."""
    arms, detectors, checks = result["arms"], result["detectors"], []
    for control in CONTROLS:
        ours = arms[f"complementary|{control}"]["per_category"]
        for category, entry in ours.items():
            best, value, interval = _best_detector(detectors, category, control)
            for score, label in (("auroc", "default score"), ("features", "encoder-token NN")):
                checks.append({"check": f"{category}, control {control}: ours ({label}) vs the best "
                                        f"training-free detector ({best})",
                               "ours": entry[score]["mean"], "other": value,
                               "verdict": spread_verdict(entry[score]["seeds"], value),
                               "book_verdict": seeds_verdict(entry[score]["seeds"], entry[score]["ci"],
                                                             value, interval)})
        theirs = arms[f"random|{control}"]["per_category"]
        for category, entry in ours.items():
            gap = entry["auroc"]["mean"] - theirs[category]["auroc"]["mean"]
            verdict = spread_verdict(entry["auroc"]["seeds"],
                                     [v + MASKING_MARGIN for v in theirs[category]["auroc"]["seeds"]])
            shifted = [v + MASKING_MARGIN for v in theirs[category]["auroc"]["ci"]]
            paired = result.get("masking_difference", {}).get(control, {}).get(category)
            checks.append({"check": f"{category}, control {control}: complementary >= random + "
                                    f"{MASKING_MARGIN:g}", "ours": entry["auroc"]["mean"],
                           "other": theirs[category]["auroc"]["mean"], "gap": gap,
                           "verdict": verdict,
                           "book_verdict": seeds_verdict(
                               entry["auroc"]["seeds"], entry["auroc"]["ci"],
                               [v + MASKING_MARGIN for v in theirs[category]["auroc"]["seeds"]], shifted,
                               None if paired is None else [v - MASKING_MARGIN for v in paired])})
    screw = arms["complementary|per_image"]["per_category"].get("screw")
    if screw is not None:
        checks.append({"check": f"screw under the control >= {SCREW_UNDER_CONTROL:g}",
                       "ours": screw["auroc"]["mean"], "other": SCREW_UNDER_CONTROL,
                       "verdict": spread_verdict(screw["auroc"]["seeds"], SCREW_UNDER_CONTROL),
                       "book_verdict": seeds_verdict(screw["auroc"]["seeds"], screw["auroc"]["ci"],
                                                     SCREW_UNDER_CONTROL, [SCREW_UNDER_CONTROL] * 2)})
    return checks


def measure_real(profile: str, seeds: list[int], control_seeds: list[int] | None = None,
                 overrides: dict | None = None) -> dict:
    """The whole evidence record of one real-data profile (see the module's docstring), its
    parameters changed by ``overrides`` (recorded in the section) where given."""
    params = load_profile(profile, overrides or {})
    control_seeds = control_seeds or seeds
    arms = {(masking, control): _arm(params, masking, control,
                                     seeds if control == "none" else control_seeds)
            for masking in MASKINGS for control in CONTROLS}
    config = train_config(params)
    two_by_two, two_by_two_paired_intervals = _two_by_two(arms)
    result = {
        "profile": profile, "kind": "real", "config": config.to_dict(), "rule": SPREAD_RULE,
        "book_rule": SEEDS_RULE, "overrides": dict(overrides or {}),
        "two_by_two": two_by_two,
        "two_by_two_paired": two_by_two_paired_intervals,
        "curve": curve(arms[("complementary", "none")]["_runs"][0]),
        "detectors": _detectors(config),
        "paper": {c: float(paper.table1().loc[c, "paper"]) for c in config.categories
                  if c in paper.table1().index},
        # per control and category: complementary minus random, paired on the same test images
        "masking_difference": {control: {c: list(v) for c, v in paired_differences(
            [r.scores for r in arms[("complementary", control)]["_runs"]],
            [r.scores for r in arms[("random", control)]["_runs"]],
            f"score_{config.score_reduction}").items() if c != MEAN} for control in CONTROLS},
        "arms": {f"{m}|{c}": {k: v for k, v in arm.items() if k != "_runs"}
                 for (m, c), arm in arms.items()},
    }
    result["checks"] = verdicts(result)
    return result


def _seed_cell(entry: dict) -> str:
    """"0.812 ± 0.010 [0.770, 0.850]": seed mean ± seed std, then the interval of the mean."""
    ci = entry["ci"]
    interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if all(np.isfinite(ci)) else ""
    spread = f" ± {entry['std']:.3f}" if len(entry["seeds"]) > 1 else " (one seed)"
    return f"{entry['mean']:.3f}{spread}{interval}"


def _pair(intervals: dict) -> str:
    low, high = intervals[MEAN]
    return f"[{low:.3f}, {high:.3f}]"


def markdown_real(result: dict) -> list[str]:
    """The real-data section of the quality record, as Markdown lines."""
    arms, detectors = result["arms"], result["detectors"]
    categories = list(arms["complementary|none"]["per_category"])
    seeds = arms["complementary|none"]["seeds"]
    control_seeds = arms["complementary|per_image"]["seeds"]
    changed = "; ".join(f"{k} = {v}" for k, v in result.get("overrides", {}).items())
    lines = [f"## Profile `{result['profile']}`: every real category, one model"
             + (f" (changed: {changed})" if changed else ""), "",
             f"Seeds: {', '.join(map(str, seeds))} (control arms: "
             f"{', '.join(map(str, control_seeds))}). Each cell: mean over training seeds ± their "
             "standard deviation, then the 95% bootstrap interval over test images of the seed "
             "mean. KolektorSDD is outside the paper's Table 1. The benchmark targets' rule (seed spread alone): "
             f"{result['rule']}. The book's rule, beside it: {result.get('book_rule', '—')}.", ""]
    header = ("| category | arm | control | default score | eq. 1 | encoder-token NN (beyond the "
              "paper) | pixel AUROC | paper |")
    lines += [header, "|---|---|---|---|---|---|---|---|"]
    for category in categories:
        for key, arm in arms.items():
            masking, control = key.split("|")
            entry = arm["per_category"][category]
            pixel = entry["pixel_auroc"]
            lines.append(f"| {category} | {masking} | {control} | {_seed_cell(entry['auroc'])} | "
                         f"{_seed_cell(entry['eq1'])} | {_seed_cell(entry['features'])} | "
                         f"{'—' if not np.isfinite(pixel) else f'{pixel:.3f}'} | "
                         f"{result['paper'].get(category, '—')} |")
    lines += ["", "Training-free detectors (max of the map smoothed with sigma 2; 95% interval over "
              "test images):", "", "| detector | control | " + " | ".join(categories) + " |",
              "|---|---|" + "---|" * len(categories)]
    for detector in detectors.values():
        cells = [f"{v['auroc']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"
                 if all(np.isfinite(v["ci"])) else f"{v['auroc']:.3f}"
                 for v in (detector["per_category"][c] for c in categories)]
        lines.append(f"| {detector['method']} | {detector['control']} | " + " | ".join(cells) + " |")
    lines += ["", "Training masking x test masking (mean image AUROC over categories, default score, "
              "no control; mean over seeds):", "", "| trained \\ tested | complementary | random |",
              "|---|---|---|"]
    for trained, row in result["two_by_two"].items():
        lines.append(f"| {trained} | {row['complementary']:.3f} | {row['random']:.3f} |")
    lines += ["", "AUROC against training minutes (first seed's weight snapshots, no control):", "",
              "| epoch | minutes | mean | " + " | ".join(categories) + " |",
              "|---|---|---|" + "---|" * len(categories)]
    paired = result.get("two_by_two_paired")
    if paired:
        lines += ["", "The 2x2's paired differences (95% bootstrap interval, mean over categories): "
                  + "; ".join(f"trained {t}, complementary minus random views {_pair(v)}"
                              for t, v in paired["test_views"].items())
                  + "; " + "; ".join(f"tested with {t} views, complementary- minus random-trained "
                                     f"{_pair(v)}" for t, v in paired["training"].items())]
    for point in result["curve"]:
        lines.append(f"| {point['epoch']} | {point['minutes']:.1f} | {point['image_auroc']:.3f} | "
                     + " | ".join(f"{point['per_category'][c]:.3f}" for c in categories) + " |")
    for control, intervals in result.get("masking_difference", {}).items():
        lines += ["", f"Complementary minus random masking, control {control}, default score: the 95% "
                  "bootstrap interval of the paired difference (both arms on the same resampled test "
                  "images): " + "; ".join(f"{c} [{v[0]:.3f}, {v[1]:.3f}]" for c, v in intervals.items())]
    minutes = {key: max(arm["train_minutes"]) for key, arm in arms.items()}
    lines += ["", "Longest training of each arm (minutes): "
              + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()), "",
              "| check | ours | other | verdict (seed spread) | by the book's rule |", "|---|---|---|---|---|"]
    for check in result["checks"]:
        lines.append(f"| {check['check']} | {check['ours']:.3f} | {check['other']:.3f} | "
                     f"{check['verdict']} | {check.get('book_verdict', '—')} |")
    return lines + [""]
