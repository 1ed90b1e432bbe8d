"""The recipe search: train configuration variants, score each with a grid of scoring choices.

Each training variant is a set of ``TrainConfig`` overrides on a base configuration; each trained
model is then scored with every combination of test masking, number of averaged partitions, map
kind, smoothing and reduction (reconstructions are computed once per masking and partition count).
One JSON line per (training variant, scoring variant) is appended to the output file, with the
machine, its load, the training time and the settings, so the recipe log (``recipe_log.yaml``) can
cite measured numbers.

    python -m bench.records.recipe --study gen-val --data synthetic-seed1 --variants betas,lr
    python -m bench.records.recipe --list

The tuning data is the generated set drawn with seed 1 (``synthetic-seed1``): the same generator as
the reported set (seed 0) but other images, so choices are not made on a reported test split.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import time
from pathlib import Path

import torch

from maskad_core import scoring
from maskad_core.evaluation.evaluate import image_masks
from maskad_core.evaluation.results import score_split
from maskad_core.evaluation.run_record import train_and_evaluate
from maskad_core.training.config import TrainConfig
from maskad_core.training.splits import dataset_samples, open_dataset

RESULTS = Path(__file__).resolve().parents[1] / "results" / "recipe"

# The starting point of the search: the cpu profile of the first round (64 px, 96/64 wide, E2D4).
BASE = dict(image_size=64, patch_size=8, embed_dim=96, depth=2, num_heads=3, decoder_embed_dim=64,
            decoder_depth=4, decoder_num_heads=4, epochs=40, batch_size=16, lr=1e-3,
            warmup_epochs=4, max_train_images_per_category=40, lpips="off", adam_beta2=0.999,
            augment=["crop", "rotate", "flip"])

# A variant key that is not a TrainConfig setting: "torch" re-initialises every linear and
# convolution layer with PyTorch's defaults instead of MAE's (xavier-uniform); such runs live under
# their own home (INIT_HOME inside maskad's), since their configuration (and run id) equals the base's.
INIT_KEY = "init"
INIT_HOME = "bench-init-torch"

# Named groups of training variants (overrides of BASE, applied in order within a chain).
VARIANTS: dict[str, dict[str, dict]] = {
    "start": {"first-round": {}},
    "betas": {"beta2-0.95": {"adam_beta2": 0.95}},
    "augment": {"aug-flip": {"adam_beta2": 0.95, "augment": ["flip"]},
                "aug-none": {"adam_beta2": 0.95, "augment": []}},
    "lr": {"lr-2e-3": {"adam_beta2": 0.95, "lr": 2e-3},
           "lr-5e-4": {"adam_beta2": 0.95, "lr": 5e-4}},
    "width": {"wide-192": {"adam_beta2": 0.95, "embed_dim": 192, "num_heads": 6,
                           "decoder_embed_dim": 128}},
    "loss": {"l1-only": {"adam_beta2": 0.95, "ssim_weight": 0.0},
             "ssim-only": {"adam_beta2": 0.95, "l1_weight": 0.0}},
    "batch": {"batch-8": {"adam_beta2": 0.95, "batch_size": 8}},
    "epochs": {"epochs-80": {"adam_beta2": 0.95, "epochs": 80}},
    "wd": {"wd-0": {"adam_beta2": 0.95, "weight_decay": 0.0}},
    "norm": {"input-norm": {"adam_beta2": 0.95, "input_norm": "imagenet"}},
    # the SSIM term holds training at the mean colour (diagnosed on one category): reweight it
    "lossw": {"norm-l1-only": {"adam_beta2": 0.95, "input_norm": "imagenet", "ssim_weight": 0.0},
              "norm-ssim-0.1": {"adam_beta2": 0.95, "input_norm": "imagenet", "ssim_weight": 0.1}},
    # on top of the reweighted loss: width and length
    "scale": {"ssim-0.1-wide-192": {"adam_beta2": 0.95, "input_norm": "imagenet", "ssim_weight": 0.1,
                                    "embed_dim": 192, "num_heads": 6, "decoder_embed_dim": 128},
              "ssim-0.1-epochs-80": {"adam_beta2": 0.95, "input_norm": "imagenet",
                                     "ssim_weight": 0.1, "epochs": 80}},
    # round 2, on the chosen recipe (run with --base CHOSEN): the settings round 1 left unmeasured
    "r2-augment": {"r2-aug-flip": {"augment": ["flip"]}, "r2-aug-none": {"augment": []},
                   "r2-aug-crop-flip": {"augment": ["crop", "flip"]}},
    "r2-optim": {"r2-lr-2e-3": {"lr": 2e-3}, "r2-lr-5e-4": {"lr": 5e-4},
                 "r2-wd-0": {"weight_decay": 0.0}, "r2-warmup-0": {"warmup_epochs": 0.0}},
    "r2-model": {"r2-heads-6": {"num_heads": 6},
                 "r2-size-128": {"image_size": 128, "patch_size": 16}},
    # initialisation is not a TrainConfig setting: the bench re-initialises the model itself
    "r2-init": {"r2-init-torch": {INIT_KEY: "torch"}},
    # the yardstick: the chosen recipe trained with other seeds
    "r2-seed": {"r2-seed-1": {"seed": 1}, "r2-seed-2": {"seed": 2}},
    # the mvtec profile's model (128 px, 16 px patches, 192 wide) against r2-size-128 (96 wide)
    "r2-mvtec-width": {"r2-size-128-wide-192": {"image_size": 128, "patch_size": 16,
                                                "embed_dim": 192, "decoder_embed_dim": 128}},
}

# The recipe chosen in round 1, the base of the round-2 groups.
CHOSEN = {"adam_beta2": 0.95, "input_norm": "imagenet", "ssim_weight": 0.1}

SCORING_GRID = dict(partitions=(1, 4), kinds=("l2", "l2_centered", "l1", "ssim"),
                    sigmas=(0.0, 2.0, 4.0), reductions=("mean", "max"),
                    standardizations=("none", "per_pixel"))


def resolve_data(name: str) -> str:
    """``synthetic-seedN`` (the generated set drawn with seed N, generated if needed) or a folder."""
    if name.startswith("synthetic-seed"):
        from maskad_core.data.synthetic import default_data_root

        return str(default_data_root(seed=int(name.removeprefix("synthetic-seed"))))
    return str(Path(name).expanduser().resolve())


@torch.no_grad()
def reconstruct_test_set(model, config: TrainConfig, masking: str, partitions: int,
                         split: str = "test"):
    """(images, reconstructions, masks, samples) of the whole test split (or of the unaugmented
    training images, with the masks ``evaluate.fit_map_statistics`` uses)."""
    test_set, _ = open_dataset(config, split)
    scoring_config = TrainConfig(**{**config.to_dict(), "test_masking": masking,
                                    "test_partitions": partitions})
    model.eval()
    images, recons, masks = [], [], []
    for start in range(0, len(test_set), 32):
        items = [test_set[i] for i in range(start, min(start + 32, len(test_set)))]
        batch = torch.stack([item["image"] for item in items])
        view_masks = image_masks(scoring_config, model.num_patches, range(start, start + len(items)),
                                 stream="eval" if split == "test" else "fit")
        recons.append(model.reconstruct(batch, view_masks).clamp(0, 1))
        images.append(batch)
        masks.append(torch.stack([item["mask"][0] for item in items]))
    return torch.cat(images), torch.cat(recons), torch.cat(masks), dataset_samples(test_set)


def score_grid(model, config: TrainConfig, maskings, grid=SCORING_GRID):
    """One dict per scoring variant: per-category image AUROC, their mean, mean pixel AUROC;
    each variant's maps scored by ``results.score_split``, the path every evaluation takes."""
    rows = []
    for masking, partitions in itertools.product(maskings, grid["partitions"]):
        images, recons, masks, samples = reconstruct_test_set(model, config, masking, partitions)
        raw = {kind: scoring.anomaly_map(images, recons, kind=kind) for kind in grid["kinds"]}
        if "per_pixel" in grid["standardizations"]:
            train_images, train_recons, _, normal = reconstruct_test_set(
                model, config, masking, partitions, split="train")
            raw_normal = {kind: scoring.anomaly_map(train_images, train_recons, kind=kind)
                          for kind in grid["kinds"]}
        for kind, sigma, standardization in itertools.product(
                grid["kinds"], grid["sigmas"], grid["standardizations"]):
            maps = scoring.gaussian_smooth(raw[kind], sigma)
            if standardization == "per_pixel":
                statistics = scoring.MapStatistics.fit(
                    scoring.gaussian_smooth(raw_normal[kind], sigma), [s.category for s in normal])
                maps = statistics.standardize(maps, [s.category for s in samples])
            scored = score_split(samples, maps, masks, detail=False,
                                 topk_fraction=config.topk_fraction)
            for reduction in grid["reductions"]:
                per_category = {c: row[f"image_auroc_{reduction}"]
                                for c, row in scored.per_category.items()}
                rows.append({"test_masking": masking, "test_partitions": partitions,
                             "anomaly_map": kind, "smooth_sigma": sigma,
                             "map_standardization": standardization,
                             "reduction": reduction, "per_category": per_category,
                             "image_auroc": scored.mean[f"image_auroc_{reduction}"],
                             "pixel_auroc": scored.mean["pixel_auroc"]})
    return rows


# The plateau probe: one generated category, a few hundred steps, how far the reconstruction has
# moved from a flat image (its spatial std against the image's) under each loss weighting.
PLATEAU_LOSSES = {"SSIM + L1, equal weights": (1.0, 1.0), "SSIM 0.1 + L1": (0.1, 1.0),
                  "L1 alone": (0.0, 1.0), "SSIM alone": (1.0, 0.0)}


def plateau_probe(data: str, category: str = "cap", steps: int = 300, every: int = 50,
                  batch: int = 16) -> list[dict]:
    """Train BASE's model (with input standardisation and betas 0.95) on one category's training
    images for ``steps`` steps under each loss of PLATEAU_LOSSES; every ``every`` steps record the
    loss and the mean spatial std of the reconstruction and of the images (same seed for all)."""
    from maskad_core.losses import ReconstructionLoss
    from maskad_core.model import build_model
    from maskad_core.training.train import batch_masks, make_optimizer

    rows = []
    for label, (ssim_weight, l1_weight) in PLATEAU_LOSSES.items():
        config = TrainConfig(**{**BASE, "data_root": resolve_data(data), "categories": [category],
                                "augment": [], "adam_beta2": 0.95, "input_norm": "imagenet",
                                "ssim_weight": ssim_weight, "l1_weight": l1_weight}).validate()
        train_set, _ = open_dataset(config, "train")
        images = torch.stack([train_set[i]["image"] for i in range(len(train_set))])
        torch.manual_seed(0)
        model = build_model(config)
        criterion = ReconstructionLoss(ssim_weight, l1_weight, 0.0, lpips="off")
        optimizer = make_optimizer(model, config)
        generator = torch.Generator().manual_seed(0)
        for step in range(1, steps + 1):
            x = images[torch.randint(0, len(images), (batch,), generator=generator)]
            recon = model(x, batch_masks(config, model.num_patches, batch, generator))
            loss, _ = criterion(recon, x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % every == 0:
                rows.append({"loss": label, "step": step, "value": float(loss.detach()),
                             "recon_std": float(recon.detach().std(dim=(2, 3)).mean()),
                             "image_std": float(x.std(dim=(2, 3)).mean()), "category": category,
                             "data": data, "lr": config.lr, "batch": batch})
    return rows


def std_floor_probe(variant: str, study: str, fractions=(0.0, 0.03, 0.1, 0.3, 1.0, 3.0),
                    sigma: float = 2.0) -> list[dict]:
    """Mean image AUROC of one trained variant of a study file under each std floor of
    ``scoring.MapStatistics`` (map l2_centered, smoothed by ``sigma``, standardised, max)."""
    frame = [json.loads(line) for line in (RESULTS / f"{study}.jsonl").read_text().splitlines()]
    record = next(r for r in reversed(frame) if r["variant"] == variant)
    config = TrainConfig(**record["config"]).validate()
    model = train_and_evaluate(config, quiet=True).load_model("cpu")
    test = reconstruct_test_set(model, config, config.masking, 1)
    normal = reconstruct_test_set(model, config, config.masking, 1, split="train")
    maps = {name: scoring.gaussian_smooth(scoring.anomaly_map(part[0], part[1], "l2_centered"), sigma)
            for name, part in (("test", test), ("train", normal))}
    samples, normal_categories = test[3], [s.category for s in normal[3]]
    default, rows = scoring.STD_FLOOR_FRACTION, []
    try:
        for fraction in fractions:
            scoring.STD_FLOOR_FRACTION = fraction
            statistics = scoring.MapStatistics.fit(maps["train"], normal_categories)
            standardized = statistics.standardize(maps["test"], [s.category for s in samples])
            scored = score_split(samples, standardized, detail=False)
            rows.append({"variant": variant, "std_floor_fraction": fraction, "smooth_sigma": sigma,
                         "image_auroc": scored.mean["image_auroc_max"]})
    finally:
        scoring.STD_FLOOR_FRACTION = default
    return rows


def machine() -> dict:
    from bench.perf.machine import machine_info

    return {**machine_info(torch.device("cpu")), "load_1min": os.getloadavg()[0]}


@contextlib.contextmanager
def torch_default_init():
    """Train with PyTorch's default initialisation of linear and convolution layers, in INIT_HOME."""
    import maskad_core.training.train as train_module
    from maskad_core.data.paths import maskad_home

    build = train_module.build_model

    def build_with_torch_init(config):
        model = build(config)
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.reset_parameters()
        return model

    previous = os.environ.get("MASKAD_HOME")
    os.environ["MASKAD_HOME"] = str(maskad_home() / INIT_HOME)
    train_module.build_model = build_with_torch_init
    try:
        yield
    finally:
        train_module.build_model = build
        if previous is None:
            os.environ.pop("MASKAD_HOME")
        else:
            os.environ["MASKAD_HOME"] = previous


def run_variant(study: str, data: str, name: str, overrides: dict, base: dict, maskings,
                out: Path, quiet: bool = True) -> None:
    overrides = dict(overrides)
    init = overrides.pop(INIT_KEY, "mae")
    config = TrainConfig(**{**base, **overrides, "data_root": resolve_data(data)}).validate()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with torch_default_init() if init == "torch" else contextlib.nullcontext():
        run = train_and_evaluate(config, quiet=quiet)
    model = run.load_model("cpu")
    trained = run.metrics["training"]
    grid = score_grid(model, config, maskings or (config.masking,))
    record = {"study": study, "data": data, "variant": name,
              "overrides": {**overrides, **({INIT_KEY: init} if init != "mae" else {})},
              "config": config.to_dict(), "run": run.id, "train_seconds": trained["wall_time_s"],
              "final_loss": trained["final_loss"], "wall_seconds": time.perf_counter() - started,
              "load_1min_before": load_before, "machine": machine(),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for row in grid:
            handle.write(json.dumps({**record, **row}) + "\n")
    best = max(grid, key=lambda r: r["image_auroc"])
    eq1 = next(r for r in grid if r["anomaly_map"] == "l2" and r["smooth_sigma"] == 0
               and r["reduction"] == "mean" and r["test_partitions"] == 1)
    print(f"{name}: train {trained['wall_time_s']:.0f}s loss {trained['final_loss']:.4f}  "
          f"eq1 {eq1['image_auroc']:.3f}  best {best['image_auroc']:.3f} "
          f"({best['anomaly_map']}, sigma {best['smooth_sigma']}, {best['reduction']}, "
          f"P={best['test_partitions']}, {best['test_masking']})", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="gen-val", help="name of the output file (JSON lines)")
    parser.add_argument("--data", default="synthetic-seed1")
    parser.add_argument("--variants", default="start,betas", help="comma-separated groups")
    parser.add_argument("--base", default="{}",
                        help="JSON overrides of BASE for every variant, or 'chosen' (round 1's recipe)")
    parser.add_argument("--only", default="", help="only these variant names (comma-separated)")
    parser.add_argument("--maskings", default="", help="test maskings (default: the training one)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: two searches side by side on a shared 2-core machine)")
    parser.add_argument("--plateau", action="store_true",
                        help="run the plateau probe instead (writes <study>-plateau.jsonl)")
    parser.add_argument("--std-floor", metavar="VARIANT",
                        help="score VARIANT (already in the study file) under several std floors of "
                             "the per-pixel standardisation (writes <study>-std-floor.jsonl)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.list:
        for group, variants in VARIANTS.items():
            print(group, json.dumps(variants))
        return 0
    if args.plateau:
        out = RESULTS / f"{args.study}-plateau.jsonl"
        rows = plateau_probe(args.data)
        record = {"machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with out.open("a") as handle:
            for row in rows:
                handle.write(json.dumps({**record, **row}) + "\n")
                print(row["loss"], row["step"], f"{row['recon_std']:.3f} / {row['image_std']:.3f}")
        return 0
    if args.std_floor:
        out = RESULTS / f"{args.study}-std-floor.jsonl"
        record = {"machine": machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with out.open("a") as handle:
            for row in std_floor_probe(args.std_floor, args.study):
                handle.write(json.dumps({**record, **row}) + "\n")
                print(row["std_floor_fraction"], f"{row['image_auroc']:.3f}")
        return 0
    base = {**BASE, **(CHOSEN if args.base == "chosen" else json.loads(args.base))}
    maskings = tuple(m for m in args.maskings.split(",") if m)
    out = RESULTS / f"{args.study}.jsonl"
    for group in args.variants.split(","):
        for name, overrides in VARIANTS[group].items():
            if args.only and name not in args.only.split(","):
                continue
            run_variant(args.study, args.data, name, overrides, base, maskings, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
