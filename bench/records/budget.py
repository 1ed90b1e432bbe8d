"""``python -m bench.records.budget``: the real profile's epochs chosen on data the study does not report.

    python -m bench.records.budget                       # -> bench/results/budget.{json,md}
    python -m bench.records.budget --epochs 1,2,5,10,20  # the candidates (default)

The study's test splits are what it reports, so the number of epochs is not picked on them. Instead,
per real category, a fifth of the normal *training* images is held out (a seeded draw), and a
validation split is built from them: each held-out image as it is (good) and the same image with
one planted defect (a pasted patch of the same image, a scratch or a stain, in turn) and its mask.
The real profile's model is trained on the other four fifths for each candidate number of epochs
(each a whole run: its warm-up a tenth of the run, its learning rate annealed to the end, seed 0)
and scored on that validation split with the profile's default score. Nothing of the test splits
is read.

The rule, fixed before the measurement: the fewest epochs whose mean image AUROC over the
categories on the validation split is within ``TOLERANCE`` of the best candidate's. Planted defects
are not real ones: the curve says when training stops paying on this proxy, not what the test split
would give.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.records.lab import cores, git, load_average
from maskad_core.data.mvtec import category_folders
from maskad_core.data.paths import maskad_home
from maskad_core.study import profiles
from maskad_core.training.runtime import cpu_name

RESULTS = Path(__file__).resolve().parents[1] / "results"
PROFILE = "real"
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 0
TOLERANCE = 0.01
DEFECT_KINDS = ("patch", "scratch", "stain")
VALIDATION_VERSION = 1  # bump when the split or the planting changes: a new folder, new run ids
RULE = (f"the fewest epochs whose mean image AUROC on the held-out validation split is within "
        f"{TOLERANCE} of the best candidate's")


def held_out(files: list[Path], fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED
             ) -> tuple[list[Path], list[Path]]:
    """(kept for training, held out) from a category's normal training images: a seeded draw of
    ``round(fraction * n)`` images (at least one), both lists sorted."""
    files = sorted(files)
    if len(files) < 2:
        raise ValueError(f"need at least 2 training images to hold some out, got {len(files)}")
    count = min(len(files) - 1, max(1, round(fraction * len(files))))
    chosen = set(np.random.default_rng(seed).permutation(len(files))[:count].tolist())
    return ([f for i, f in enumerate(files) if i not in chosen],
            [f for i, f in enumerate(files) if i in chosen])


def _box(rng: np.random.Generator, height: int, width: int, side: int) -> tuple[int, int]:
    return int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))


def plant_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image with one defect, its mask) for a uint8 image (H, W) or (H, W, C); sizes relative to
    the shorter side. ``patch``: a square of the same image from elsewhere, flipped, pasted;
    ``scratch``: a straight line a few pixels wide, darker or brighter; ``stain``: a soft ellipse
    that scales the intensity. The mask marks the pixels the defect changed."""
    if kind not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; allowed: {', '.join(DEFECT_KINDS)}")
    height, width = image.shape[:2]
    short = min(height, width)
    out = image.astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "patch":
        side = max(4, int(short * rng.uniform(0.08, 0.16)))
        (y0, x0), (y1, x1) = _box(rng, height, width, side), _box(rng, height, width, side)
        piece = out[y0:y0 + side, x0:x0 + side][::-1, ::-1].copy()
        out[y1:y1 + side, x1:x1 + side] = piece
        weight = np.zeros((height, width), np.float32)
        weight[y1:y1 + side, x1:x1 + side] = 1.0
        changed = np.abs(out - image.astype(np.float32))
        changed = changed.max(axis=-1) if changed.ndim == 3 else changed
        mask = (weight > 0) & (changed > 0)
        if not mask.any():  # a flat region pasted onto itself: mark the square anyway
            mask = weight > 0
        return np.clip(out, 0, 255).astype(np.uint8), mask
    if kind == "scratch":
        length = short * rng.uniform(0.15, 0.35)
        half_width = max(1.0, short * 0.008)
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
        angle = rng.uniform(0, np.pi)
        dy, dx = np.sin(angle), np.cos(angle)
        along = (yy - cy) * dy + (xx - cx) * dx
        across = np.abs(-(yy - cy) * dx + (xx - cx) * dy)
        weight = ((np.abs(along) <= length / 2) & (across <= half_width)).astype(np.float32)
        target = 0.0 if out.mean() > 127 else 255.0
        strength = rng.uniform(0.5, 0.8)
    else:  # stain
        ry, rx = short * rng.uniform(0.04, 0.08), short * rng.uniform(0.04, 0.08)
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
        distance = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        weight = np.clip(1.5 - distance, 0.0, 1.0)  # flat inside, a soft edge
        target = 0.0 if rng.random() < 0.5 else 255.0
        strength = rng.uniform(0.3, 0.5)
    blend = (strength * weight)[..., None] if out.ndim == 3 else strength * weight
    out = out * (1 - blend) + target * blend
    return np.clip(out, 0, 255).astype(np.uint8), weight > 0.25


def build_validation_root(data_root: Path, categories: list[str], target: Path) -> dict:
    """Write the validation data set under ``target`` in MVTec AD's layout (training images linked,
    planted images written) and return its description: per category the counts and the files
    held out. Rebuilt from scratch each time (deterministic: same data, same folder content)."""
    if target.exists():
        shutil.rmtree(target)
    folders = category_folders(data_root)
    described = {}
    for category in categories:
        if category not in folders:
            raise ValueError(f"category {category!r} not under {data_root}; found: {', '.join(folders)}")
        source = folders[category] / "train" / "good"
        kept, out = held_out([p for p in source.iterdir() if p.suffix.lower() in {".png", ".jpg", ".bmp"}])
        base = target / category
        for folder in ("train/good", "test/good", "test/planted", "ground_truth/planted"):
            (base / folder).mkdir(parents=True)
        for path in kept:
            (base / "train/good" / path.name).symlink_to(path.resolve())
        rng = np.random.default_rng(HOLDOUT_SEED + 1)
        kinds = {}
        for i, path in enumerate(out):
            (base / "test/good" / path.name).symlink_to(path.resolve())
            kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
            image = np.asarray(Image.open(path))
            planted, mask = plant_defect(image, kind, rng)
            Image.fromarray(planted).save(base / "test/planted" / f"{path.stem}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(base / "ground_truth/planted" / f"{path.stem}_mask.png")
            kinds[kind] = kinds.get(kind, 0) + 1
        described[category] = {"train": len(kept), "held_out": len(out), "planted": kinds,
                                "held_out_files": [p.name for p in out]}
    return described


def choose(curve: list[dict], tolerance: float = TOLERANCE) -> int:
    """The rule: the fewest epochs whose ``mean_image_auroc`` is within ``tolerance`` of the best."""
    best = max(point["mean_image_auroc"] for point in curve)
    return min(point["epochs"] for point in curve if point["mean_image_auroc"] >= best - tolerance)


def measure(candidates: list[int]) -> dict:
    from maskad_core.evaluation.run_record import (
        train_and_evaluate,  # torch: imported where it is needed
    )

    params = profiles.study_parameters(PROFILE)
    base = profiles.train_config(params)
    root = maskad_home() / "validation" / f"{PROFILE}-v{VALIDATION_VERSION}"
    split = build_validation_root(Path(base.data_root), list(base.categories), root)
    load_before = load_average()
    curve = []
    for epochs in candidates:
        config = profiles.train_config(params, data_root=str(root), epochs=epochs,
                                       warmup_epochs=epochs / 10, seed=0)
        run = train_and_evaluate(config, quiet=True)
        metrics = run.metrics
        curve.append({
            "epochs": epochs, "run": run.id,
            "train_minutes": round(metrics["training"]["wall_time_s"] / 60, 2),
            "mean_image_auroc": round(float(metrics["image_auroc"]), 4),
            "per_category": {c: round(float(v[f"image_auroc_{config.score_reduction}"]), 4)
                             for c, v in metrics["per_category"].items()},
            "eq1_per_category": {c: round(float(v["image_auroc_eq1"]), 4)
                                 for c, v in metrics["per_category"].items()},
        })
        print(f"bench.records.budget: {epochs} epochs: {curve[-1]['mean_image_auroc']} in "
              f"{curve[-1]['train_minutes']} min", flush=True)
    import torch

    return {
        "profile": PROFILE, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench.records.budget --epochs " + ",".join(map(str, candidates)),
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": {"cpu": cpu_name(), "cores": cores(), "torch_threads": torch.get_num_threads(),
                    "load_avg_before": load_before, "load_avg_after": load_average()},
        "validation": {"fraction": HOLDOUT_FRACTION, "seed": HOLDOUT_SEED, "version": VALIDATION_VERSION,
                       "defects": list(DEFECT_KINDS), "categories": split},
        "settings": {"profile_epochs": params["epochs"], "warmup": "a tenth of each run",
                     "score": base.anomaly_map + ", " + base.map_standardization + ", " + base.score_reduction,
                     "seed": 0, "masking": base.masking},
        "rule": RULE, "curve": curve, "chosen_epochs": choose(curve),
    }


def markdown(record: dict) -> str:
    m = record["machine"]
    categories = sorted(record["validation"]["categories"])
    lines = [
        f"`{record['command']}` on {record['date']}, commit {record['commit']}: {m['cpu']}, "
        f"{m['cores']} cores, {m['torch_threads']} torch threads, load average (1, 5, 15 min) "
        f"{', '.join(map(str, m['load_avg_before']))} before and {', '.join(map(str, m['load_avg_after']))} after.",
        "",
        "Validation split (no test image read): per category a fifth of the normal training images "
        f"held out (seed {record['validation']['seed']}), each kept as it is and once with a planted "
        "defect (patch, scratch or stain in turn); the model trained on the other four fifths. "
        + "; ".join(f"{c}: {v['train']} training, {v['held_out']} held out"
                    for c, v in sorted(record["validation"]["categories"].items())) + ".",
        "",
        f"Profile `{record['profile']}` settings, seed 0, {record['settings']['masking']} masking, "
        f"score {record['settings']['score']}; each candidate a whole run (warm-up a tenth of it).",
        "",
        "| epochs | training minutes | mean image AUROC | " + " | ".join(categories) + " |",
        "|---|---|---|" + "---|" * len(categories),
    ]
    for point in record["curve"]:
        lines.append(f"| {point['epochs']} | {point['train_minutes']:.2f} | {point['mean_image_auroc']:.3f} | "
                     + " | ".join(f"{point['per_category'][c]:.3f}" for c in categories) + " |")
    lines += ["", f"Rule ({record['rule']}): **{record['chosen_epochs']} epochs**. One seed, planted "
              "defects: a proxy for when training stops paying, not a test-split result."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", default="1,2,5,10,20", help="candidate epochs, comma-separated")
    parser.add_argument("--markdown-only", action="store_true",
                        help="only write results/budget.md again from results/budget.json")
    args = parser.parse_args(argv)
    if args.markdown_only:
        (RESULTS / "budget.md").write_text(markdown(json.loads((RESULTS / "budget.json").read_text())))
        return 0
    try:
        candidates = sorted({int(v) for v in args.epochs.split(",") if v.strip()})
    except ValueError:
        parser.error(f"--epochs takes whole numbers separated by commas, got {args.epochs!r}")
    if not candidates or min(candidates) < 1:
        parser.error(f"--epochs needs at least one candidate of 1 or more, got {args.epochs!r}")
    record = measure(candidates)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "budget.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "budget.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
