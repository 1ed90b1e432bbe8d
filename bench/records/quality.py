"""The quality benchmark: does the recipe detect, and within what budget?

For each profile (``cpu``: the generated set; ``mvtec``: bottle and screw from MVTec AD) it trains
(or re-uses, runs are cached by configuration) the profile's main model and its random-mask
baseline of the same budget, exactly as the study's notebooks do, then records:

- image AUROC per category with the study's default score and with the paper's eq. 1, each with a
  95% bootstrap interval over test images, and pixel AUROC where masks exist;
- the same model scored with its map not standardised (``map_standardization=none``);
- the 2x2 of training masking x test masking;
- AUROC against training minutes, from the weight snapshots each run keeps;
- the training-free floor (``maskad_core.evaluation.baselines``) on the same data, size and training images;
- the issue's targets, each marked met or missed from the numbers above;
- the machine, its load, the date and every setting.

    python -m bench.records.quality                       # both profiles -> bench/results/quality.{json,md}
    python -m bench.records.quality --profiles cpu --seeds 0,1,2
    python -m bench.records.quality --seeds-for cpu=0,1,2     # three seeds for cpu, --seeds for the rest
    python -m bench.records.quality --profiles real --seeds 0,1,2 --control-seeds 0   # bench.records.evidence
    python -m bench.records.quality --profiles real --seeds 0,1,2 --set epochs=20 --set warmup_epochs=2 \
        --tag quality-real-epochs20      # a changed profile, in its own record

A run of some profiles replaces their sections of the record and keeps the others, each section
with its own date, machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.records.evidence import curve, markdown_real, measure_real
from maskad_core.evaluation.evaluate import headline_description
from maskad_core.evaluation.run_record import evaluate_run, train_and_evaluate
from maskad_core.study import report
from maskad_core.study.comparison import format_interval
from maskad_core.study.profiles import load_profile, train_config

RESULTS = Path(__file__).resolve().parents[1] / "results"
REAL_PROFILES = ("real",)  # profiles measured by bench.records.evidence (every real category, the control)

# The targets (issue 10): (profile, what, threshold); checked against measured numbers.
TARGETS = {
    "mvtec": {"bottle": 0.95, "screw": 0.90, "bottle_pixel": 0.90, "margin_over_random": 0.05,
              "train_minutes": 30.0},
    "cpu": {"mean": 0.85, "margin_over_random": 0.05, "above_best_floor": 0.0},
}


def _headline(metrics: dict, config) -> dict:
    """Per category (and mean): headline AUROC and interval, eq. 1 AUROC and interval, pixel AUROC."""
    key = f"image_auroc_{config.score_reduction}"
    rows = {}
    for category, values in metrics["per_category"].items():
        rows[category] = {"auroc": values[key], "ci": values[f"{key}_ci"],
                          "eq1": values["image_auroc_eq1"], "eq1_ci": values["image_auroc_eq1_ci"],
                          "pixel_auroc": values["pixel_auroc"], "n_test": values["n_test"]}
    rows["mean"] = {"auroc": metrics["mean"][key], "eq1": metrics["mean"]["image_auroc_eq1"],
                    "pixel_auroc": metrics["mean"]["pixel_auroc"]}
    return rows


def _floor(config) -> dict:
    from maskad_core.evaluation import baselines

    out = {}
    for method in (*baselines.FLOOR_METHODS, *baselines.PROBE_METHODS):  # floors, then probes
        evaluation, _ = baselines.evaluate_baseline(
            method, data_root=config.data_root, categories=config.categories,
            image_size=config.image_size,
            max_train_images_per_category=config.max_train_images_per_category,
            max_test_images_per_category=config.max_test_images_per_category)
        out[method] = {"per_category": {c: v["image_auroc_max"] for c, v in
                                        evaluation["per_category"].items()},
                       "mean": evaluation["mean"]["image_auroc_max"],
                       "pixel_auroc": {c: v["pixel_auroc"] for c, v in
                                       evaluation["per_category"].items()},
                       "seconds": {k: evaluation["evaluation"][k] for k in ("fit_s", "score_s")}}
    return out


def measure_profile(profile: str, seeds: list[int], overrides: dict | None = None) -> dict:
    params = load_profile(profile, overrides or {})
    result: dict = {"profile": profile, "seeds": {}, "overrides": dict(overrides or {})}
    for seed in seeds:
        main_config = train_config(params, seed=seed)
        random_config = train_config(params, seed=seed, masking="random")
        started = time.perf_counter()
        main_run, random_run = train_and_evaluate(main_config, quiet=True), train_and_evaluate(random_config, quiet=True)
        crossed = {}
        for name, run, other in (("complementary", main_run, "random"),
                                 ("random", random_run, "complementary")):
            metrics, _ = evaluate_run(run, overrides={"test_masking": other})
            crossed[name] = {run.config.masking: run.metrics["image_auroc"],
                             other: metrics["image_auroc"],
                             "per_category": {other: _headline(metrics, run.config)}}
        # the same model with its map as it is: what the per-pixel standardisation adds
        plain, _ = evaluate_run(main_run, overrides={"map_standardization": "none"})
        result["seeds"][seed] = {
            "runs": {"complementary": main_run.id, "random": random_run.id},
            "train_minutes": {"complementary": main_run.metrics["training"]["wall_time_s"] / 60,
                              "random": random_run.metrics["training"]["wall_time_s"] / 60},
            "complementary": _headline(main_run.metrics, main_config),
            "random": _headline(random_run.metrics, random_config),
            "unstandardized": _headline(plain, main_config),
            "test_masking_2x2": crossed,
            "curve": curve(main_run) if seed == seeds[0] else [],
            "wall_minutes": (time.perf_counter() - started) / 60,
        }
    config = train_config(params)
    result["config"] = config.to_dict()
    result["headline_score"] = headline_description(config)
    result["provenance"] = report.provenance(config, profile=profile)
    result["floor"] = _floor(config)
    result["targets"] = check_targets(profile, result)
    return result


def check_targets(profile: str, result: dict) -> list[dict]:
    """Each target of this profile, with the measured value (mean over seeds) and met/missed."""
    targets = TARGETS.get(profile, {})
    seeds = list(result["seeds"].values())

    def mean_of(path):
        values = []
        for seed in seeds:
            value = seed
            for key in path:
                value = value[key]
            values.append(value)
        return float(np.mean(values))

    checks = []
    for name, threshold in targets.items():
        if name == "above_best_floor":
            checks.append(_above_best_floor(result, seeds))
        elif name == "train_minutes":
            value = max(seed["train_minutes"]["complementary"] for seed in seeds)  # every run
            checks.append({"target": f"main model training <= {threshold:g} min", "value": value,
                           "met": value <= threshold})
        elif name == "margin_over_random":
            for category in [*seeds[0]["complementary"]]:
                gap = (mean_of(["complementary", category, "auroc"])
                       - mean_of(["random", category, "auroc"]))
                low = seeds[0]["complementary"][category].get("ci", [np.nan])[0]
                high_random = seeds[0]["random"][category].get("ci", [np.nan, np.nan])[1]
                beyond = bool(low > high_random) if np.isfinite(low) else None
                checks.append({"target": f"{category}: complementary >= random + {threshold:g}",
                               "value": gap, "met": gap >= threshold,
                               "beyond_intervals": beyond})
        elif name.endswith("_pixel"):
            category = name.removesuffix("_pixel")
            value = mean_of(["complementary", category, "pixel_auroc"])
            checks.append({"target": f"{category} pixel AUROC >= {threshold:g}", "value": value,
                           "met": value >= threshold})
        else:
            value = mean_of(["complementary", name, "auroc"])
            checks.append({"target": f"{name} image AUROC >= {threshold:g}", "value": value,
                           "met": value >= threshold})
    return checks


def _detector_label(method: str) -> str:
    """"floor" for a detector that localises, "probe" for a confound probe (a constant map)."""
    from maskad_core.evaluation.baselines import PROBE_METHODS

    return "probe" if method in PROBE_METHODS else "floor"


def _above_best_floor(result: dict, seeds: list[dict]) -> dict:
    """The default score's mean row over seeds against the best training-free floor's mean row,
    judged by the study's spread rule (comparison.spread_verdict)."""
    from maskad_core.evaluation.baselines import FLOOR_METHODS
    from maskad_core.study.comparison import spread_verdict

    floors = {m: f["mean"] for m, f in result.get("floor", {}).items() if m in FLOOR_METHODS}
    best = max(floors, key=floors.get) if floors else None
    ours = [seed["complementary"]["mean"]["auroc"] for seed in seeds]
    verdict = spread_verdict(ours, floors[best]) if best else "-"
    return {"target": f"mean: default score above the best floor ({best})",
            "value": float(np.mean(ours)) - (floors[best] if best else np.nan),
            "met": verdict == "higher", "verdict": verdict}


def _cell(profile: dict, kind: str, key: str, category: str) -> str:
    """Mean over seeds (± their spread when several), then the first seed's bootstrap interval."""
    seeds = list(profile["seeds"])
    values = [profile["seeds"][s][kind][category][key] for s in seeds]
    text = f"{np.mean(values):.3f}"
    if len(values) > 1:
        text += f" ± {np.std(values):.3f}"
    interval = format_interval(
        profile["seeds"][seeds[0]][kind][category].get("ci" if key == "auroc" else "eq1_ci"))
    return text if interval == "-" else f"{text} {interval}"


def markdown(record: dict) -> str:
    lines = ["# Quality benchmark", ""]
    for profile in record["profiles"]:
        lines += [f"Profile `{profile['profile']}`, measured {profile['date']}: "
                  f"`{profile['command']}`; {profile['machine']['cpu']}, "
                  f"{profile['machine']['cores']} cores, {profile['machine']['threads']} torch "
                  f"threads, torch {profile['machine']['torch']}; load (1 min) "
                  f"{profile['load_before']:.2f} before, {profile['load_after']:.2f} after; "
                  f"{profile['wall_minutes']:.1f} min.", ""]
        if profile["profile"] in REAL_PROFILES:
            lines += markdown_real(profile)
            continue
        seeds = list(profile["seeds"])
        first = profile["seeds"][seeds[0]]
        lines += [f"## Profile `{profile['profile']}`", "", profile["provenance"], "",
                  f"Default score: {profile['headline_score']}. Seeds: {', '.join(map(str, seeds))}; "
                  "intervals: 95% bootstrap over test images (first seed).", "",
                  "| category | complementary (default score) | eq. 1 | map not standardised | "
                  "random masking | pixel AUROC | "
                  + " | ".join(f"{_detector_label(m)}: {m}" for m in profile["floor"]) + " |",
                  "|---|---|---|---|---|---|" + "---|" * len(profile["floor"])]
        for category in first["complementary"]:
            cells = [_cell(profile, kind, key, category) for kind, key in
                     (("complementary", "auroc"), ("complementary", "eq1"),
                      ("unstandardized", "auroc"), ("random", "auroc"))]
            floors = [f"{f['mean'] if category == 'mean' else f['per_category'][category]:.3f}"
                      for f in profile["floor"].values()]
            pixel = first["complementary"][category]["pixel_auroc"]
            lines.append(f"| {category} | {' | '.join(cells)} | "
                         f"{'—' if not np.isfinite(pixel) else f'{pixel:.3f}'} | "
                         + " | ".join(floors) + " |")
        lines += ["", "Training minutes: " + ", ".join(
            f"{k} {v:.1f}" for k, v in first["train_minutes"].items()) + "; floor fit+score seconds: "
            + ", ".join(f"{m} {sum(f['seconds'].values()):.1f}" for m, f in profile["floor"].items()),
            "", "Train masking x test masking (mean image AUROC, default score):", "",
            "| trained \\ tested | complementary | random |", "|---|---|---|"]
        for trained, row in first["test_masking_2x2"].items():
            lines.append(f"| {trained} | {row['complementary']:.3f} | {row['random']:.3f} |")
        lines += ["", "AUROC against training minutes (weight snapshots):", "",
                  "| epoch | minutes | mean image AUROC |", "|---|---|---|"]
        lines += [f"| {p['epoch']} | {p['minutes']:.1f} | {p['image_auroc']:.3f} |"
                  for p in first["curve"]]
        lines += ["", "| target | measured | met |", "|---|---|---|"]
        for check in profile["targets"]:
            extra = ""
            if check.get("beyond_intervals") is not None:
                extra = " (beyond the intervals)" if check["beyond_intervals"] else \
                    " (intervals overlap)"
            lines.append(f"| {check['target']} | {check['value']:.3f} | "
                         f"{'met' if check['met'] else 'missed'}{extra} |")
        lines.append("")
    return "\n".join(lines)


def merged_record(path: Path, measured: list[dict]) -> dict:
    """The record at ``path`` with the profiles just measured replacing their old sections; a
    section of the old layout takes the record's own date, command, machine and load."""
    old = json.loads(path.read_text()) if path.is_file() else {"profiles": []}
    shared = {k: old[k] for k in ("date", "command", "machine", "load_before", "load_after",
                                  "wall_minutes") if k in old}
    kept = [{**shared, **p} for p in old["profiles"]
            if p["profile"] not in {m["profile"] for m in measured}]
    order = {name: i for i, name in enumerate(REAL_PROFILES + ("mvtec", "cpu"))}
    profiles = sorted(kept + measured, key=lambda p: order.get(p["profile"], len(order)))
    return {"profiles": profiles}


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"seeds must be comma-separated integers, got {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="mvtec,cpu")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--seeds-for", action="append", default=[], metavar="PROFILE=SEEDS",
                        help="training seeds of one profile (repeatable), e.g. cpu=0,1,2")
    parser.add_argument("--control-seeds", default=None,
                        help="training seeds of the control arms of a real-data profile "
                             "(default: --seeds)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="change a profile parameter for this measurement (repeatable), e.g. "
                             "epochs=20; recorded in the section. Use with --tag: a record of the "
                             "profile as it is should not be replaced by a changed one")
    parser.add_argument("--tag", default="quality", help="output name in bench/results")
    args = parser.parse_args(argv)
    from bench.records.recipe import machine

    seeds = {p: _seeds(args.seeds) for p in args.profiles.split(",")}
    for item in args.seeds_for:
        name, sep, values = item.partition("=")
        if not sep or name not in seeds:
            parser.error(f"--seeds-for {item!r}: expected PROFILE=SEEDS with PROFILE one of "
                         f"{', '.join(seeds)}")
        seeds[name] = _seeds(values)
    control_seeds = _seeds(args.control_seeds) if args.control_seeds else None
    from maskad_core.training.overrides import split_assignments

    try:
        overrides = split_assignments(args.overrides)
    except ValueError as error:
        parser.error(f"--set: {error}")
    if overrides and args.tag == "quality":
        parser.error("--set changes the profile: give the record its own --tag (the quality record "
                     "holds each profile as profiles.yaml defines it)")
    profiles = []
    for name, profile_seeds in seeds.items():
        started, load_before = time.perf_counter(), os.getloadavg()[0]
        measured = (measure_real(name, profile_seeds, control_seeds, overrides) if name in REAL_PROFILES
                    else measure_profile(name, profile_seeds, overrides))
        measured.update({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         "command": " ".join(["python -m bench.records.quality",
                                              *(sys.argv[1:] if argv is None else argv)]),
                         "machine": machine(), "load_before": load_before,
                         "load_after": os.getloadavg()[0],
                         "wall_minutes": (time.perf_counter() - started) / 60})
        profiles.append(measured)
    record = merged_record(RESULTS / f"{args.tag}.json", profiles)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
    (RESULTS / f"{args.tag}.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
