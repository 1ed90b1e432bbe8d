"""``python -m bench.records.control_residue``: what the control leaves of the screw confound.

    python -m bench.records.control_residue        # -> bench/results/control_residue.{json,md}

Under the control (``image_standardization=per_image``) the paper's eq. 1 on MVTec AD screw reached
0.832 ± 0.028 (bench/results/quality.md) while the default score and every detector fell to about
0.5. This record measures, with no model at all, per real category and with and without the
control, the image AUROC (defective above normal) of:

- ``mean_colour_eq1`` (the ``mean_colour`` probe of ``evaluation.detectors``): eq. 1 of a reconstruction that is the image's own mean colour, i.e. the
  image's variance over pixels: what a model that has learned nothing but the mean colour scores;
- ``clipped_fraction``: the fraction of pixels the control cuts to [0, 1] (beyond 3.33 standard
  deviations of the image's own mean), and ``brightness`` (the mean intensity);
- the same statistics on the held-out fifth of the normal training images (``bench.records.budget``'s
  draw), so that the direction is seen: which test images differ from the training ones.

Without the clamp to [0, 1] every controlled image has the same variance (0.15² = 0.0225) and the
first statistic ties; the clamp turns a difference in the histograms' tails into one of variance.
The real profile's image size (128 px, squashed) is used. Nothing here is tuned.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.records.budget import held_out
from bench.records.lab import cores, git, load_average
from maskad_core.data.image_norm import SCALE, standardize_images
from maskad_core.data.mvtec import MVTecAD, category_folders
from maskad_core.metrics import auroc_interval, image_auroc
from maskad_core.study import profiles
from maskad_core.training.runtime import cpu_name

RESULTS = Path(__file__).resolve().parents[1] / "results"
STATISTICS = ("mean_colour_eq1", "clipped_fraction", "brightness")
CONTROLS = ("none", "per_image", "per_image_unclamped")


def statistics(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image (B, C, H, W in [0, 1] or controlled): the three statistics, averaged over channels."""
    variance = images.var(dim=(2, 3), correction=0).mean(dim=1)
    clipped = ((images <= 0.0) | (images >= 1.0)).float().mean(dim=(1, 2, 3))
    values = {"mean_colour_eq1": variance, "clipped_fraction": clipped, "brightness": images.mean(dim=(1, 2, 3))}
    # rounded to 1e-7: values equal up to float32 rounding (the unclamped control's variance) tie
    return {name: np.round(v.double().numpy(), 7) for name, v in values.items()}


def controlled(images: torch.Tensor, control: str) -> torch.Tensor:
    if control == "none":
        return images
    return standardize_images(images, clamp=control == "per_image")


def category_record(root: Path, category: str, size: int, non_square: str) -> dict:
    test = MVTecAD(root, categories=[category], split="test", image_size=size, non_square=non_square)
    train = MVTecAD(root, categories=[category], split="train", image_size=size, non_square=non_square)
    _, out = held_out([s.path for s in train.samples])
    out = set(out)
    test_images = torch.stack([test[i]["image"] for i in range(len(test))])
    labels = np.array([s.label for s in test.samples])
    held = torch.stack([train[i]["image"] for i, s in enumerate(train.samples) if s.path in out])
    record = {"test_good": int((labels == 0).sum()), "test_defective": int(labels.sum()),
              "held_out_normal": len(held), "controls": {}}
    for control in CONTROLS:
        on_test, on_held = statistics(controlled(test_images, control)), statistics(controlled(held, control))
        record["controls"][control] = {
            name: {"auroc": round(float(image_auroc(labels, on_test[name])), 3),
                   "auroc_ci": [round(float(v), 3) for v in auroc_interval(labels, on_test[name])],
                   "test_good_mean": float(on_test[name][labels == 0].mean()),
                   "test_defective_mean": float(on_test[name][labels == 1].mean()),
                   "held_out_normal_mean": float(on_held[name].mean())}
            for name in STATISTICS}
    return record


def measure() -> dict:
    params = profiles.study_parameters("real")
    config = profiles.train_config(params)
    root = Path(config.data_root)
    folders = category_folders(root)
    load_before = load_average()
    started = time.perf_counter()
    categories = {c: category_record(folders[c].parent, c, config.image_size, config.non_square)
                  for c in config.categories}
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "python -m bench.records.control_residue", "commit": git("rev-parse", "--short", "HEAD"),
            "machine": {"cpu": cpu_name(), "cores": cores(), "load_avg_before": load_before,
                        "load_avg_after": load_average(), "seconds": round(time.perf_counter() - started, 1)},
            "image_size": config.image_size, "non_square": config.non_square, "scale": SCALE,
            "held_out": "a fifth of each category's normal training images, seed 0 (bench.records.budget.held_out)",
            "categories": categories}


def markdown(record: dict) -> str:
    lines = [f"`{record['command']}` on {record['date']}, commit {record['commit']}: {record['machine']['cpu']}, "
             f"{record['machine']['seconds']} s; images at {record['image_size']} px ({record['non_square']}). "
             "No model: each statistic is a score by itself (higher = more anomalous), its image AUROC "
             "on the test split, and its mean over the normal test images, the defective ones and the "
             "held-out normal training images.", "",
             "| category | control | statistic | AUROC [95% interval] | normal test | defective test | held-out normal train |",
             "|---|---|---|---:|---:|---:|---:|"]
    for category, entry in record["categories"].items():
        for control, stats in entry["controls"].items():
            for name, v in stats.items():
                lines.append(f"| {category} | {control} | {name} | {v['auroc']:.3f} "
                             f"[{v['auroc_ci'][0]:.3f}, {v['auroc_ci'][1]:.3f}] | {v['test_good_mean']:.5f} | "
                             f"{v['test_defective_mean']:.5f} | {v['held_out_normal_mean']:.5f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.control_residue",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    record = measure()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "control_residue.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / "control_residue.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
