"""The commands that score: ``maskad evaluate`` (a run on a test split), ``maskad score`` (new
images) and ``maskad baseline`` (a training-free detector). Each checks where it will write before
any work, and all three read ``key=value`` settings with the one grammar of :mod:`maskad_core.training.overrides`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from maskad_core.data.paths import writable_dir
from maskad_core.evaluation.outputs import check_output_folder, output_lock, write_manifest
from maskad_core.evaluation.run_record import EVAL_FIELDS
from maskad_core.training.runtime import select_device

EXIT_SKIPPED = 1  # maskad score: some images could not be read (the rest were scored)
EVALUATE_FILES = ("table.csv", "metrics.json", "scores.csv")


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


def _data_folder(data: str | None) -> str | None:
    if data is not None and not Path(data).expanduser().is_dir():
        raise FileNotFoundError(f"data folder {data} does not exist")
    return data


# ------------------------------------------------------------------ evaluate
def register_evaluate(subparsers, formatter) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a run: per-category metrics table with a mean row",
        description=_wrap("Score the test split with a finished run's model and print and write the "
                          "per-category table (image AUROC per reduction and eq. 1, pixel AUROC, "
                          "AUPRO) with the mean row. The run's saved map statistics are used."),
        formatter_class=formatter)
    parser.add_argument("run", metavar="RUN", help="run folder, or (a prefix of) a run id")
    parser.add_argument("--data", metavar="ROOT", default=None,
                        help="data folder to evaluate on; None: the data the run was trained on")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write table.csv, metrics.json, scores.csv: a new or empty "
                             "folder, or a previous evaluation; None: RUN/evaluate")
    parser.add_argument("--device", default=None, help="device; None: the run's setting")
    parser.add_argument("--partial", action="store_true",
                        help="allow an unfinished run: score its last checkpoint (the output says "
                             "'partial: epoch k of n')")
    parser.add_argument("--refit-statistics", action="store_true",
                        help="fit the per-pixel map statistics on --data's training images instead "
                             "of using the run's")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="evaluation settings to change without retraining: "
                             + ", ".join(EVAL_FIELDS))
    parser.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from maskad_core.evaluation.results import format_table, metrics_table
    from maskad_core.evaluation.run_record import evaluate_run, require_finished
    from maskad_core.training import runs

    run = runs.load_run(args.run)
    require_finished(run, args.partial)  # before any work
    data = _data_folder(args.data)
    if args.device is not None:
        select_device(args.device)
    default = run.path / "evaluate"
    target = Path(args.out).expanduser() if args.out else default
    mine = target.resolve() == default.resolve()
    check_output_folder(target, "evaluate", own=EVALUATE_FILES if mine else (), allowed_in_run=default)
    hint = "name another folder with --out" if args.out is None else "choose another --out"
    out = writable_dir(target, "the evaluation's output folder", hint)
    with output_lock(out, "evaluate"):
        metrics, scores = evaluate_run(run, data, device=args.device, quiet=args.quiet,
                                       overrides=args.overrides, partial=args.partial,
                                       refit_statistics=args.refit_statistics)
        write_manifest(out, "evaluate", EVALUATE_FILES)
        _write_evaluation(out, metrics, scores)
    print(format_table(metrics_table(metrics)))
    if metrics["partial"]:
        print(f"{metrics['partial']}: the run has not finished training")
    where = f" on {data}" if data is not None else ""
    print(f"map statistics{where}: {metrics['evaluation']['map_statistics']}")
    print(f"written: {out / 'table.csv'}")
    return 0


def _write_evaluation(out: Path, metrics: dict, scores) -> None:
    from maskad_core.evaluation.results import metrics_table
    from maskad_core.training import runs

    runs.atomic_write_text(out / "table.csv", metrics_table(metrics).to_csv())
    runs.write_json(out / "metrics.json", metrics)
    runs.write_csv(out / "scores.csv", scores)


# ------------------------------------------------------------------ score
def register_score(subparsers, formatter) -> None:
    parser = subparsers.add_parser(
        "score", help="score new images with a run's model; heat maps and a CSV",
        description=_wrap("Anomaly scores for new images (every reduction and eq. 1) in "
                          "DIR/scores.csv and, per image, a PNG with the image, its reconstruction "
                          "and the anomaly map. Unreadable images are listed (DIR/skipped.csv) and "
                          "the exit status is 1; DIR is replaced only when the scoring is complete."),
        formatter_class=formatter)
    parser.add_argument("run", metavar="RUN", help="run folder, or (a prefix of) a run id")
    parser.add_argument("inputs", metavar="IMAGE_OR_FOLDER", nargs="+",
                        help="image files, or folders searched recursively")
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="output folder: new, empty, or a previous scoring (replaced); never "
                             "a folder holding other files, an input, or a run folder")
    parser.add_argument("--category", default=None,
                        help="the images' category, for a run trained on several whose maps are "
                             "standardised per pixel (map_standardization=per_pixel)")
    parser.add_argument("--no-heatmaps", action="store_true", help="write only scores.csv")
    parser.add_argument("--partial", action="store_true",
                        help="allow an unfinished run: score with its last checkpoint")
    parser.add_argument("--device", default=None, help="device; None: the run's setting")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_score)


def cmd_score(args) -> int:
    from maskad_core.evaluation.new_images import score_images

    result = score_images(args.run, args.inputs, args.out, category=args.category,
                          device=args.device, heatmaps=not args.no_heatmaps, partial=args.partial,
                          quiet=args.quiet)
    note = f" ({result.note})" if result.note else ""
    print(f"scored {len(result.scores)} image(s){note}: {Path(args.out) / 'scores.csv'}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable image(s) (also in "
              f"{Path(args.out) / 'skipped.csv'}):")
        for path, reason in result.skipped:
            print(f"  {path}: {reason}")
        return EXIT_SKIPPED
    return 0


# ------------------------------------------------------------------ baseline
def baseline_defaults() -> dict:
    """The settings ``maskad baseline`` takes as key=value, with their defaults: the evaluation's
    names where they mean the same, then each detector's own settings."""
    from maskad_core.evaluation.detectors import DEFAULT_SMOOTH_SIGMA
    from maskad_core.training.config import field_defaults

    defaults = field_defaults()
    return {"image_size": defaults["image_size"], "max_train_images_per_category": None,
            "max_test_images_per_category": None, "smooth_sigma": DEFAULT_SMOOTH_SIGMA,
            "topk_fraction": defaults["topk_fraction"], "non_square": defaults["non_square"],
            "image_standardization": defaults["image_standardization"]}


def _detector_settings_help() -> str:
    from maskad_core.evaluation.detectors import DETECTORS

    return "; ".join(f"{name}: " + (", ".join(f"{key}={setting.default}"
                                              for key, setting in detector.settings.items())
                                    or "none")
                     for name, detector in DETECTORS.items())


def register_baseline(subparsers, formatter) -> None:
    from maskad_core.evaluation import detectors

    shown = " ".join(f"{k}={v}" for k, v in baseline_defaults().items())
    parser = subparsers.add_parser(
        "baseline", help="training-free detectors (the floors and the confound probes)",
        description=_wrap("Fit a training-free detector per category on the normal training images "
                          "(the MAE's selection, size and loader) and print the same per-category "
                          "table as 'maskad evaluate'. The headline is image_auroc_max: the max of "
                          "the map smoothed with smooth_sigma."),
        epilog=_wrap(f"settings (key=value, as for maskad evaluate): {shown}; and each detector's "
                     f"own: {_detector_settings_help()}"),
        formatter_class=formatter)
    parser.add_argument("--data", metavar="ROOT", default=None,
                        help="MVTec AD-layout data folder; None: the embedded synthetic set")
    parser.add_argument("--categories", default=None,
                        help="comma-separated categories; None: every category found")
    parser.add_argument("--method", choices=detectors.METHODS, default="gaussian",
                        help="the detector")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the evaluation (per category, mean, seconds) as JSON")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings (see below)")
    parser.set_defaults(func=cmd_baseline)


def baseline_settings(method: str, overrides) -> tuple[dict, dict]:
    """(evaluation settings, detector settings) from key=value items, each value parsed by the
    one grammar; evaluation keys are typed as TrainConfig types them."""
    from maskad_core.evaluation.detectors import DETECTORS
    from maskad_core.training.config import TrainConfig
    from maskad_core.training.overrides import parse_assignments

    given = parse_assignments(overrides or [])
    settings = baseline_defaults()
    allowed = DETECTORS[method].settings
    unknown = [k for k in given if k not in settings and k not in allowed]
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} for maskad baseline --method {method}; "
                         f"settings: {', '.join([*settings, *allowed])}")
    typed = TrainConfig().with_overrides({k: v for k, v in given.items() if k in settings})
    settings.update({k: getattr(typed, k) for k in given if k in settings})
    return settings, {k: v for k, v in given.items() if k in allowed}


def cmd_baseline(args) -> int:
    from maskad_core.evaluation.baselines import evaluate_baseline
    from maskad_core.evaluation.results import format_table, metrics_table
    from maskad_core.training import runs

    data = _data_folder(args.data)
    settings, detector = baseline_settings(args.method, args.overrides)
    if args.json:  # checked before the fitting, which may take minutes
        target = Path(args.json).expanduser()
        if target.is_dir():
            raise ValueError(f"--json {args.json} is a folder; name a file, e.g. {target / 'baseline.json'}")
        writable_dir(target.parent, "--json's folder", "choose another --json")
    categories = None
    if args.categories is not None:
        categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    evaluation, _ = evaluate_baseline(
        args.method, data, categories, settings["image_size"],
        settings["max_train_images_per_category"], settings["max_test_images_per_category"],
        smooth_sigma=settings["smooth_sigma"], topk_fraction=settings["topk_fraction"],
        non_square=settings["non_square"], image_standardization=settings["image_standardization"],
        **detector)
    timing = evaluation["evaluation"]
    print(format_table(metrics_table(evaluation)))
    print(f"{args.method} (training-free), {settings['image_size']} px, smoothing sigma "
          f"{settings['smooth_sigma']:g}; headline {timing['headline']}; load {timing['load_s']:.1f} s, "
          f"fit {timing['fit_s']:.1f} s, score {timing['score_s']:.1f} s")
    if args.json:
        runs.write_json(Path(args.json).expanduser(), evaluation)
        print(f"written: {args.json}")
    return 0
