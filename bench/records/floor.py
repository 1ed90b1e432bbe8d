"""``python -m bench.records.floor``: the training-free floor (maskad_core.evaluation.baselines) on MVTec AD and the
generated set, with fit and score seconds, machine and load; writes bench/results/floor.{json,md}.

A benchmark fact, not a test: the numbers are whatever this machine measures. Settings: every
detector at each MVTec AD size with all training images; the generated set at 64 px with 40
training images per category (the study's cpu profile); smoothing sigma 2; headline image AUROC of
the max of the smoothed map, beside eq. 1's mean.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
from pathlib import Path

import torch

from bench.perf.machine import ContentionMeter, PeakMemory, machine_info
from maskad_core.evaluation import baselines, detectors
from maskad_core.training.runs import atomic_write_text, write_json

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
SHARED_MVTEC = Path(__file__).resolve().parents[3] / "shared" / "data" / "mvtec_ad"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.records.floor", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mvtec", type=Path, default=SHARED_MVTEC,
                        help="MVTec AD folder; skipped (with a note) when missing")
    parser.add_argument("--mvtec-categories", default="bottle,screw", help="comma-separated")
    parser.add_argument("--mvtec-sizes", default="128,224", help="image sides, comma-separated")
    parser.add_argument("--generated", type=Path, default=None,
                        help="generated data folder; None: the embedded synthetic set")
    parser.add_argument("--generated-size", type=int, default=64, help="image side")
    parser.add_argument("--generated-train", type=int, default=40,
                        help="training images per category")
    parser.add_argument("--methods", default=",".join(detectors.FLOOR_METHODS), help="comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    parser.add_argument("--tag", default="floor", help="output file name without suffix")
    return parser


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def settings(args) -> tuple[list[dict], list[str]]:
    """(the runs to make, notes about what was skipped)."""
    runs, notes = [], []
    if args.mvtec.is_dir():
        for size in map(int, _split(args.mvtec_sizes)):
            runs.append({"data": "MVTec AD", "root": args.mvtec,
                         "categories": _split(args.mvtec_categories), "image_size": size,
                         "max_train": None})
    else:
        notes.append(f"MVTec AD skipped: {args.mvtec} does not exist")
    runs.append({"data": "generated", "root": args.generated, "categories": None,
                 "image_size": args.generated_size, "max_train": args.generated_train})
    return runs, notes


def measure(args) -> dict:
    meter = ContentionMeter()
    info = machine_info(torch.device("cpu"))
    started = datetime.datetime.now(datetime.UTC)
    plan, notes = settings(args)
    results = []
    for setting in plan:
        for method in _split(args.methods):
            print(f"{setting['data']} {setting['image_size']} px, {method} ...", file=sys.stderr,
                  flush=True)
            with PeakMemory(torch.device("cpu")) as memory:
                evaluation, _ = baselines.evaluate_baseline(
                    method, setting["root"], setting["categories"], setting["image_size"],
                    setting["max_train"])
            results.append({"data": setting["data"], "method": method,
                            "image_size": setting["image_size"],
                            "max_train_images_per_category": setting["max_train"],
                            "peak_memory_mib": memory.mib, "peak_memory_method": memory.method,
                            "per_category": evaluation["per_category"], "mean": evaluation["mean"],
                            "evaluation": evaluation["evaluation"]})
    return {"measured": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": info,
            "load": meter.report(info["cores"]), "command": command_line(args), "notes": notes,
            "smooth_sigma": baselines.DEFAULT_SMOOTH_SIGMA, "std_floor": detectors.STD_FLOOR,
            "max_chunk_bytes": detectors.DEFAULT_MAX_CHUNK_BYTES, "results": results}


def command_line(args) -> str:
    parts = ["python -m bench.records.floor"]
    defaults = build_parser().parse_args([])
    for name, value in vars(args).items():
        if value != getattr(defaults, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def _span(values) -> str:
    values = sorted(set(values))
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def _f(value: float, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    machine, load = report["machine"], report["load"]
    lines = [
        f"Measured {report['measured']} with `{report['command']}` on **{machine['cpu']}** "
        f"({machine['cores']} cores, {machine['threads']} torch threads, torch {machine['torch']}, "
        f"device cpu). 1-minute load average {load['load_avg_1min_start']} at the start, "
        f"{load['load_avg_1min_end']} at the end; other processes used "
        f"{load.get('other_processes_cpu_share', float('nan')):.0%} of the machine's CPU time "
        f"during the {load['wall_s']} s run, so seconds are noisy.",
        "",
        f"Training-free detectors (`maskad_core/evaluation/baselines.py`), fitted per category on the normal "
        f"training images; maps smoothed with a Gaussian of sigma {report['smooth_sigma']:g} px. "
        f"Headline: image AUROC of the max of the smoothed map; eq. 1's mean beside it. Gaussian "
        f"std floor {report['std_floor']}; nearest-neighbour chunks at most "
        f"{report['max_chunk_bytes'] / 2**20:g} MiB. Seconds: load = decoding both splits, "
        f"fit, score = maps + smoothing + reductions of the whole test split; peak = the extra "
        f"resident memory of the whole evaluation.",
        "",
        "| data | detector | px | train / cat | category | image AUROC max | image AUROC mean "
        "| pixel AUROC | AUPRO | load s | fit s | score s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in report["results"]:
        rows = result["per_category"].items()
        if result["data"] == "generated":  # one line for the set, per category below
            settings = result["evaluation"]
            rows = [(f"mean of {len(result['per_category'])}",
                     {**result["mean"], **{k: settings[k] for k in ("load_s", "fit_s", "score_s")},
                      "n_train": _span(r["n_train"] for r in result["per_category"].values())})]
        for name, row in rows:
            peak = result["peak_memory_mib"]
            lines.append(
                f"| {result['data']} | {result['method']} | {result['image_size']} | "
                f"{row['n_train']} | {name} | {_f(row['image_auroc_max'])} | "
                f"{_f(row['image_auroc_mean'])} | {_f(row['pixel_auroc'])} | "
                f"{_f(row['pixel_aupro'])} | {row['load_s']:.1f} | {row['fit_s']:.2f} | "
                f"{row['score_s']:.2f} | {'—' if peak is None else f'{peak:.0f}'} |")
    generated = [r for r in report["results"] if r["data"] == "generated"]
    if generated:
        categories = list(generated[0]["per_category"])
        lines += ["", "Generated set, per category (image AUROC max / mean):", "",
                  "| detector | " + " | ".join(categories) + " |",
                  "|---|" + "---|" * len(categories)]
        for result in generated:
            cells = [f"{_f(result['per_category'][c]['image_auroc_max'], 2)} / "
                     f"{_f(result['per_category'][c]['image_auroc_mean'], 2)}" for c in categories]
            lines.append(f"| {result['method']} | " + " | ".join(cells) + " |")
    roots = dict.fromkeys(f"{r['data']}: `{r['evaluation']['data_root']}`" for r in report["results"])
    lines += ["", "Data: " + "; ".join(roots) + "."]
    for note in report["notes"]:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{args.tag}.json", report)
    text = markdown(report)
    atomic_write_text(args.out / f"{args.tag}.md", text)
    print(text)
    print(f"wrote {args.out / args.tag}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
