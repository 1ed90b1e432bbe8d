"""``python -m bench.records.curve``: what each step of compute buys, one long run of a profile's model.

    python -m bench.records.curve --epochs 200 --seed 0                  # -> bench/results/curve-real-complementary.{json,md}
    python -m bench.records.curve --epochs 200 --masking random          # the random-masking model's curve
    python -m bench.records.curve --epochs 3 --profile smoke --out DIR   # a tiny check

The run trains the profile's model on four fifths of each category's normal training images (the
fifth held out is the same seeded draw as ``bench.records.budget``'s), keeps its weights at a
log-spaced set of epochs (``training.runs.snapshot_epochs``) and, as each snapshot is written,
scores it:

- on the held-out normal training images: the reconstruction error (eq. 1, the mean squared error
  of the composed reconstruction), the only number the headline budget's rule
  (``study.budget_rule``) may read;
- on the test split of the profile's data: image AUROC with the default score, eq. 1 and the
  encoder-token nearest neighbour, and pixel AUROC where masks exist; and the default score with the
  other masking's test views (random views for a complementary-trained model and the reverse), so
  that a curve of each training masking gives the 2x2 of training x test masking along the way.

The record is rewritten after every snapshot, so a run stopped early leaves the points it reached
(``status`` says how far it got). The curve is reported, never used to choose anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from bench.records.budget import held_out
from bench.records.lab import cores, git, load_average
from maskad_core.data.mvtec import category_folders
from maskad_core.data.paths import maskad_home
from maskad_core.study import budget_rule, profiles
from maskad_core.training.runtime import cpu_name

RESULTS = Path(__file__).resolve().parents[1] / "results"
SPLIT_VERSION = 1  # bump when the held-out split changes: a new folder, new run ids
OTHER_MASKING = {"complementary": "random", "random": "complementary"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def build_holdout_root(data_root: Path, categories: list[str], target: Path) -> dict:
    """``target`` in MVTec AD's layout: per category the kept training images in train/good and
    the held-out ones in test/good (links, no copies). Returns per category the counts and the
    held-out file names. Rebuilt from scratch (deterministic)."""
    if target.exists():
        shutil.rmtree(target)
    folders = category_folders(data_root)
    described = {}
    for category in categories:
        if category not in folders:
            raise ValueError(f"category {category!r} is not under {data_root}; found: {', '.join(folders)}")
        source = folders[category] / "train" / "good"
        kept, out = held_out([p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES])
        for folder, files in (("train/good", kept), ("test/good", out)):
            (target / category / folder).mkdir(parents=True)
            for path in files:
                (target / category / folder / path.name).symlink_to(path.resolve())
        described[category] = {"train": len(kept), "held_out": len(out),
                               "held_out_files": [p.name for p in out]}
    return described


def held_out_errors(run, epoch: int, holdout_root: Path) -> dict:
    """Mean eq. 1 reconstruction error per category (and over all images) of the held-out normal
    images, with the weights kept after ``epoch``."""
    import torch

    from maskad_core.evaluation.evaluate import map_test_split
    from maskad_core.training.config import TrainConfig
    from maskad_core.training.splits import dataset_samples, open_dataset

    config = TrainConfig(**{**run.config.to_dict(), "data_root": str(holdout_root)})
    test_set, _ = open_dataset(config, "test", holdout_root)
    model = run.load_model("cpu", epoch=epoch)
    _, _, eq1 = map_test_split(model, config, test_set, None, torch.device("cpu"))
    categories = [s.category for s in dataset_samples(test_set)]
    per = {c: float(eq1[[i for i, k in enumerate(categories) if k == c]].mean())
           for c in dict.fromkeys(categories)}
    return {"mean": float(eq1.mean()), "per_category": per}


def score_snapshot(run, epoch: int, data_root: Path, holdout_root: Path) -> dict:
    """One point of the curve: the held-out error and every test-split score of one snapshot."""
    from maskad_core.evaluation.feature_score import evaluate_feature_nn
    from maskad_core.evaluation.run_record import evaluate_run

    started = time.perf_counter()
    evaluation, _ = evaluate_run(run, data_root=data_root, device="cpu", epoch=epoch)
    other = OTHER_MASKING[run.config.masking]  # the 2x2: the same weights scored with the other test views
    crossed, _ = evaluate_run(run, data_root=data_root, device="cpu", epoch=epoch,
                              overrides={"test_masking": other})
    features, _ = evaluate_feature_nn(run, epoch=epoch, test_root=str(data_root))
    reduction = run.config.score_reduction
    per_category = {}
    for category, values in evaluation["per_category"].items():
        per_category[category] = {
            "default": _round(values[f"image_auroc_{reduction}"]),
            "eq1": _round(values["image_auroc_eq1"]),
            "feature_nn": _round(features["per_category"][category][f"image_auroc_{reduction}"]),
            "pixel": _round(values["pixel_auroc"]),
            f"default_{other}_views": _round(crossed["per_category"][category][f"image_auroc_{reduction}"]),
        }
    return {"held_out_error": held_out_errors(run, epoch, holdout_root), "per_category": per_category,
            "scoring_seconds": round(time.perf_counter() - started, 1)}


def _round(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 4)


def curve_config(profile: str, epochs: int, seed: int, masking: str, overrides: list[str]):
    """(the profile's configuration, its data root, the held-out root, the curve run's configuration)."""
    params = profiles.study_parameters(profile, overrides)
    base = profiles.train_config(params)
    if base.data_root is None:
        raise SystemExit("bench.records.curve needs a profile with real data (data_root set)")
    holdout_root = maskad_home() / "validation" / f"{profile}-heldout-v{SPLIT_VERSION}"
    config = profiles.train_config(params, data_root=str(holdout_root), epochs=epochs,
                                   warmup_epochs=epochs / 10, seed=seed, masking=masking)
    return base, Path(base.data_root), holdout_root, config


def measure(profile: str, epochs: int, seed: int, masking: str, out: Path, overrides: list[str]) -> dict:
    import torch

    from maskad_core.training import runs as runs_module
    from maskad_core.training.runs import Run, snapshot_epochs
    from maskad_core.training.train import Callbacks, train

    base, data_root, holdout_root, config = curve_config(profile, epochs, seed, masking, overrides)
    split = build_holdout_root(data_root, list(base.categories), holdout_root)
    record = {
        "profile": profile, "masking": masking, "seed": seed, "epochs": epochs,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m bench.records.curve " + " ".join(sys.argv[1:]),
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": {"cpu": cpu_name(), "cores": cores(), "torch_threads": torch.get_num_threads(),
                    "nice": os.nice(0), "load_avg_before": load_average()},
        "overrides": list(overrides),
        "data": {"source": str(data_root.name), "categories": list(base.categories),
                 "holdout": {"fraction": 0.2, "seed": 0, "version": SPLIT_VERSION, "categories": split}},
        "settings": {"image_size": config.image_size, "embed_dim": config.embed_dim,
                     "decoder_embed_dim": config.decoder_embed_dim, "batch_size": config.batch_size,
                     "warmup_epochs": config.warmup_epochs, "lr": config.lr,
                     "score": f"{config.anomaly_map}, {config.map_standardization}, {config.score_reduction}"},
        "snapshots": snapshot_epochs(epochs), "status": "running", "points": [],
        "rule": budget_rule.RULE.format(tolerance=budget_rule.DEFAULT_TOLERANCE),
    }
    name = f"curve-{profile}-{masking}-seed{seed}"
    state = {"path": runs_module.run_path(config)}

    def after_epoch(epoch_index: int) -> None:
        epoch = epoch_index + 1
        if epoch not in record["snapshots"]:
            return
        run = Run(state["path"])
        point = {"epoch": epoch, **_progress(state["path"], epoch),
                 **score_snapshot(run, epoch, data_root, holdout_root)}
        record["points"].append(point)
        record["machine"]["load_avg_now"] = load_average()
        record["status"] = f"stopped after epoch {epoch} of {epochs}" if epoch < epochs else "finished"
        write(record, out, name)
        print(f"bench.records.curve: epoch {epoch}: held-out error {point['held_out_error']['mean']:.5f}, "
              f"default {json.dumps({c: v['default'] for c, v in point['per_category'].items()})}", flush=True)

    run = train(config, quiet=True, callbacks=Callbacks(after_epoch=after_epoch))
    if not record["points"]:  # the run was trained before: score its kept snapshots now
        for epoch in run.snapshots():
            record["points"].append({"epoch": epoch, **_progress(run.path, epoch),
                                     **score_snapshot(run, epoch, data_root, holdout_root)})
        record["status"] = "finished (scored from a trained run)"
    record["learned"] = budget_rule.learned_budget(
        {seed: [(p["epoch"], p["held_out_error"]["mean"]) for p in record["points"]]})
    record["machine"]["load_avg_after"] = load_average()
    write(record, out, name)
    return record


def add_detectors(record: dict) -> dict:
    """The training-free detectors' image AUROC per category (every floor and probe, no control),
    fitted on the profile's full normal training images at the profile's size and scored on the
    same test split as the curve: the horizontal lines of the curve's figure."""
    from maskad_core.study.seeds import detector_results

    params = profiles.study_parameters(record["profile"], record.get("overrides", []))
    results = detector_results(profiles.train_config(params), control="none")
    record["detectors"] = {method: {c: {"auroc": _round(r.auroc), "ci": [_round(v) for v in r.interval]}
                                    for c, r in rows.items()} for method, rows in results.items()}
    record["detectors_note"] = ("fitted on every normal training image (the curve's model saw four "
                                "fifths of them), scored on the same test split, no control")
    return record


def reconstruction_strip(record: dict, out_png: Path) -> Path:
    """One defective test image per category (the first of its split) and its composed
    reconstruction (the default complementary views) at every scored snapshot: a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from maskad_core.evaluation.evaluate import reconstruct_and_map
    from maskad_core.training import runs as runs_module
    from maskad_core.training.splits import dataset_samples, open_dataset

    _, data_root, _, config = curve_config(record["profile"], record["epochs"], record["seed"],
                                           record["masking"], record.get("overrides", []))
    run = runs_module.Run(runs_module.run_path(config))
    test_set, _ = open_dataset(config, "test", data_root)
    samples = dataset_samples(test_set)
    chosen = [next(i for i, s in enumerate(samples) if s.category == c and s.label == 1)
              for c in record["data"]["categories"]]
    images = torch.stack([test_set[i]["image"] for i in chosen])
    epochs = [p["epoch"] for p in record["points"]]
    fig, axes = plt.subplots(len(chosen), len(epochs) + 1, squeeze=False,
                             figsize=(1.6 * (len(epochs) + 1), 1.75 * len(chosen)))
    for row, index in enumerate(chosen):
        axes[row, 0].imshow(images[row].permute(1, 2, 0).clamp(0, 1).numpy())
        axes[row, 0].set_title(f"{samples[index].category}\n{samples[index].defect_type}", fontsize=8)
    for column, epoch in enumerate(epochs, start=1):
        model = run.load_model("cpu", epoch=epoch)
        recon, _ = reconstruct_and_map(model, config, images, chosen, torch.device("cpu"))
        for row in range(len(chosen)):
            axes[row, column].imshow(recon[row].permute(1, 2, 0).numpy())
            axes[row, column].set_title(f"epoch {epoch}", fontsize=8)
    for axis in axes.ravel():
        axis.axis("off")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=150)
    plt.close(fig)
    return out_png


def _progress(path: Path, epoch: int) -> dict:
    """Training seconds and images seen up to ``epoch``, from the checkpoint's history."""
    from maskad_core.training.runs import CHECKPOINT_FILE, load_checkpoint_file

    history = load_checkpoint_file(path / CHECKPOINT_FILE)["history"][:epoch]
    return {"train_minutes": round(sum(r["seconds"] for r in history) / 60, 2),
            "images_seen": int(sum(r["images"] for r in history)),
            "train_loss": round(float(history[-1]["total"]), 5)}


def markdown(record: dict) -> str:
    m = record["machine"]
    categories = record["data"]["categories"]
    lines = [
        f"`{record['command']}` on {record['date']}, commit {record['commit']}: {m['cpu']}, {m['cores']} cores, "
        f"{m['torch_threads']} torch threads, nice {m['nice']}, load average (1, 5, 15 min) "
        f"{', '.join(map(str, m['load_avg_before']))} before.",
        "",
        f"Status: {record['status']}. The {record['profile']} profile's model ({record['settings']['image_size']} px, "
        f"encoder {record['settings']['embed_dim']}, decoder {record['settings']['decoder_embed_dim']}), "
        f"{record['masking']} masking, seed {record['seed']}, a schedule of {record['epochs']} epochs (warm-up a tenth), "
        f"trained on four fifths of each category's normal training images; the held-out fifth gives the "
        f"reconstruction error. Training minutes are wall time on a shared machine.",
        "",
        f"Each cell: default score / the same with {OTHER_MASKING[record['masking']]} test views / eq. 1 / "
        "encoder-token nearest neighbour / pixel AUROC (image AUROC on the test split, one seed).",
        "",
        "| epoch | train min | images seen | held-out error | " + " | ".join(categories) + " |",
        "|---:|---:|---:|---:|" + "---|" * len(categories),
    ]
    for p in record["points"]:
        cells = []
        for c in categories:
            v = p["per_category"].get(c, {})
            keys = ("default", f"default_{OTHER_MASKING[record['masking']]}_views", "eq1", "feature_nn", "pixel")
            cells.append(" / ".join("–" if v.get(k) is None else f"{v[k]:.3f}" for k in keys))
        lines.append(f"| {p['epoch']} | {p['train_minutes']} | {p['images_seen']} | "
                     f"{p['held_out_error']['mean']:.5f} | " + " | ".join(cells) + " |")
    if "learned" in record:
        learned = record["learned"]
        lines += ["", f"The budget rule ({learned['rule']}) names {learned['epochs']} epochs on this seed"
                  + ("" if learned["settled"] else " (the curve had not settled: the run is too short to say)") + "."]
    return "\n".join(lines) + "\n"


def write(record: dict, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    (out / f"{name}.md").write_text(markdown(record))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.curve", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="real")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--masking", default="complementary", choices=("complementary", "random"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a profile parameter changed (e.g. -p image_size=224)")
    parser.add_argument("--finish", type=Path, metavar="RECORD.json",
                        help="add the detectors and the reconstruction strip to a record (same machine: "
                             "the run's snapshots must be in its cache)")
    args = parser.parse_args(argv)
    if args.finish is not None:
        record = add_detectors(json.loads(args.finish.read_text()))
        name = args.finish.stem
        record["reconstructions_png"] = reconstruction_strip(record, args.finish.with_suffix(".png")).name
        write(record, args.finish.parent, name)
        return 0
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    measure(args.profile, args.epochs, args.seed, args.masking, args.out, args.param)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
