"""Evaluation: score the test split and compute image and pixel metrics per category.

Each test image gets its own masks, drawn from a generator seeded by (eval_seed, the image's index in
the test set), so scores do not depend on the batch size. The reconstruction is the model's composite
(eq. 3), the anomaly map ``scoring.anomaly_map`` and the image score every reduction of
``scoring.REDUCTIONS``.

Metric names, used everywhere (metrics.json, tables, notebooks):
``image_auroc_<reduction>`` of the configured map, ``image_auroc_eq1`` (the paper's eq. 1 score), ``pixel_auroc``,
``pixel_aupro`` (FPR limit 0.3), with ``image_note`` / ``pixel_note`` saying why a value is NaN.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto, which calls iter() on a DataLoader twice

from maskad_core import metrics as metric_fns
from maskad_core import runs as runs_module
from maskad_core import scoring
from maskad_core.config import SCORING_FIELDS, TrainConfig
from maskad_core.data import DataError, _is_sample_file, read_image
from maskad_core.masking import make_masks
from maskad_core.runs import Run, load_run, write_csv
from maskad_core.runtime import autocast, derive_seed, select_device, versions
from maskad_core.splits import data_root_of, dataset_samples, open_dataset

SCORE_NAMES = (*scoring.REDUCTIONS, "eq1")  # the map's reductions, and the paper's eq. 1
IMAGE_METRICS = tuple(f"image_auroc_{r}" for r in SCORE_NAMES)
PIXEL_METRICS = ("pixel_auroc", "pixel_aupro")
METRIC_NAMES = IMAGE_METRICS + PIXEL_METRICS
SCORE_COLUMNS = tuple(f"score_{r}" for r in SCORE_NAMES)


def image_masks(config: TrainConfig, num_patches: int, indices, stream: str = "eval") -> torch.Tensor:
    """(B, n * P, L) masks for the test images with these indices, each image's from its own seeded
    generator: P = ``test_partitions`` independent draws of the evaluation masking, stacked, so that
    eq. 3 averages every patch over all the views of all draws that masked it. ``stream`` names
    the set the indices count in ("eval": the test split, "fit": the training images of
    ``fit_map_statistics``), so the two never share draws."""
    generator = torch.Generator()
    out = []
    for index in indices:
        generator.manual_seed(derive_seed(config.eval_seed, stream, int(index)))
        out.append(torch.cat([make_masks(config.eval_masking, num_patches, config.mask_ratio, generator)
                              for _ in range(config.test_partitions)]))
    return torch.stack(out)


@torch.no_grad()
def reconstruct_and_map(model, config: TrainConfig, images: torch.Tensor, indices,
                        device: torch.device, stream: str = "eval"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstructions (B,C,H,W), anomaly maps (B,H,W)) on the CPU, float32; the map is the
    configured kind, smoothed (not yet standardised)."""
    images = images.to(device)
    masks = image_masks(config, model.num_patches, indices, stream).to(device)
    with autocast(device):
        recon = model.reconstruct(images, masks)
    recon = recon.float().clamp(0.0, 1.0)
    maps = scoring.anomaly_map(images.float(), recon, kind=config.anomaly_map,
                               smooth_sigma=config.smooth_sigma)
    return recon.cpu(), maps.cpu()


def fit_map_statistics(model, config: TrainConfig, data_root: str | Path | None = None, *,
                       device=None) -> scoring.MapStatistics:
    """Per-pixel statistics of the maps of the normal training images (the images the model was
    trained on, unaugmented, each with its own mask draws), per category: what the model's error
    looks like where nothing is wrong. These images were seen in training, so their errors run
    somewhat lower than on unseen normal images; every test image is measured against the same
    statistics, so the ranking is what matters."""
    device = torch.device(device) if device is not None else select_device(config.device)
    train_set, _ = open_dataset(config, "train", data_root)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=False,
                        num_workers=config.num_workers)
    maps, categories, offset = [], [], 0
    for batch in loader:
        count = batch["image"].shape[0]
        _, batch_maps = reconstruct_and_map(model, config, batch["image"],
                                            range(offset, offset + count), device, stream="fit")
        offset += count
        maps.append(batch_maps)
        categories.extend(batch["category"])
    return scoring.MapStatistics.fit(torch.cat(maps), categories)


def image_scores(images: torch.Tensor, recon: torch.Tensor, maps: torch.Tensor,
                 config: TrainConfig) -> dict[str, np.ndarray]:
    """Every reduction of the configured map, and the paper's eq. 1 (always the raw l2 mean)."""
    scores = {f"score_{r}": scoring.image_score(maps, r, config.topk_fraction).numpy()
              for r in scoring.REDUCTIONS}
    scores["score_eq1"] = scoring.eq1_score(images.float(), recon).numpy()
    return scores


def _metric(function, *args) -> tuple[float, str]:
    """(value, note): the note holds the warning text when the metric is undefined (NaN)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metric_fns.UndefinedMetricWarning)
        value = float(function(*args))
    note = "; ".join(str(w.message) for w in caught
                     if issubclass(w.category, metric_fns.UndefinedMetricWarning))
    return value, note


def evaluate_model(model, config: TrainConfig, data_root: str | Path | None = None, *,
                   device=None, quiet: bool = True) -> tuple[dict, pd.DataFrame]:
    """Score the test split of ``data_root`` (default: the config's data) with a trained model.

    Returns (evaluation dict with keys per_category, mean, image_auroc, evaluation, test_counts;
    scores DataFrame with one row per image).
    """
    device = torch.device(device) if device is not None else select_device(config.device)
    if data_root is None:
        data_root = data_root_of(config)
    test_set, full = open_dataset(config, "test", data_root)
    samples = dataset_samples(test_set)
    model = model.to(device).eval()
    loader = DataLoader(test_set, batch_size=config.batch_size, shuffle=False,
                        num_workers=config.num_workers)
    started = time.perf_counter()
    statistics = (fit_map_statistics(model, config, data_root, device=device)
                  if config.map_standardization == "per_pixel" else None)
    scores = {c: [] for c in SCORE_COLUMNS}
    maps_by_category: dict[str, list[torch.Tensor]] = {}
    masks_by_category: dict[str, list[torch.Tensor]] = {}
    offset = 0
    for batch in tqdm(loader, desc="evaluate", leave=False, disable=quiet, dynamic_ncols=True):
        count = batch["image"].shape[0]
        recon, maps = reconstruct_and_map(model, config, batch["image"],
                                          range(offset, offset + count), device)
        if statistics is not None:
            maps = statistics.standardize(maps, batch["category"])
        offset += count
        for key, values in image_scores(batch["image"], recon, maps, config).items():
            scores[key].append(values)
        for i, category in enumerate(batch["category"]):
            # a defective image whose mask is missing has an all-zero one: keep it out of pixel metrics
            if batch["has_mask"][i]:
                maps_by_category.setdefault(category, []).append(maps[i])
                masks_by_category.setdefault(category, []).append(batch["mask"][i, 0].bool())
    seconds = time.perf_counter() - started
    frame = pd.DataFrame({
        "path": [str(s.path) for s in samples],
        "category": [s.category for s in samples],
        "defect_type": [s.defect_type for s in samples],
        "label": [int(s.label) for s in samples],
        **{key: np.concatenate(parts) if parts else np.array([]) for key, parts in scores.items()},
    })
    per_category = {}
    for category in full.categories:
        rows = frame[frame.category == category]
        maps = torch.stack(maps_by_category[category]).float() if category in maps_by_category else None
        masks = torch.stack(masks_by_category[category]) if category in masks_by_category else None
        per_category[category] = category_metrics(rows, maps, masks, category,
                                                  headline=config.score_reduction)
    mean = mean_row(per_category)
    evaluation = {
        "per_category": per_category,
        "mean": mean,
        "image_auroc": mean[f"image_auroc_{config.score_reduction}"],
        "headline_score": headline_description(config),
        "evaluation": {"data_root": str(data_root), "anomaly_map": config.anomaly_map,
                       "map_standardization": config.map_standardization,
                       "smooth_sigma": config.smooth_sigma, "score_reduction": config.score_reduction,
                       "topk_fraction": config.topk_fraction, "eval_seed": config.eval_seed,
                       "test_masking": config.eval_masking, "test_partitions": config.test_partitions,
                       "masking": config.masking, "mask_ratio": config.mask_ratio,
                       "device": str(device), "wall_time_s": seconds,
                       "images_per_s": len(frame) / max(seconds, 1e-9)},
        "test_counts": {c: {"good": int(((frame.category == c) & (frame.label == 0)).sum()),
                            "defective": int(((frame.category == c) & (frame.label == 1)).sum())}
                        for c in full.categories},
    }
    return evaluation, frame


def headline_description(config: TrainConfig) -> str:
    """The study's default image score in words, e.g. "max of the l2_centered map, smoothed (sigma 4)"."""
    smoothing = f", smoothed (sigma {config.smooth_sigma:g})" if config.smooth_sigma > 0 else ""
    standardized = (" and standardised per pixel by the normal training images' maps"
                    if config.map_standardization == "per_pixel" else "")
    return f"{config.score_reduction} of the {config.anomaly_map} map{smoothing}{standardized}"


def category_metrics(rows: pd.DataFrame, maps: torch.Tensor | None, masks: torch.Tensor | None,
                     category: str, headline: str = "mean") -> dict:
    """Image AUROC per score (each reduction and eq. 1) with a 95% bootstrap interval over test
    images for the ``headline`` score and eq. 1, pixel AUROC and AUPRO (NaN with a note where
    undefined)."""
    result: dict = {"n_test": int(len(rows)), "n_good": int((rows.label == 0).sum()),
                    "n_defective": int((rows.label == 1).sum())}
    notes = []
    scored = [name for name in SCORE_NAMES if f"score_{name}" in rows]  # detectors without a
    for name in dict.fromkeys(n for n in (headline, "eq1") if n in scored):  # reconstruction: no eq1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", metric_fns.UndefinedMetricWarning)  # noted below
            low, high = metric_fns.auroc_interval(rows.label.to_numpy(), rows[f"score_{name}"].to_numpy())
        result[f"image_auroc_{name}_ci"] = [low, high]
    for reduction in scored:
        value, note = _metric(metric_fns.image_auroc, rows.label.to_numpy(),
                              rows[f"score_{reduction}"].to_numpy())
        result[f"image_auroc_{reduction}"] = value
        if note and note not in notes:
            notes.append(note)
    result["image_note"] = "; ".join(notes)
    if maps is None:
        result["pixel_auroc"] = result["pixel_aupro"] = float("nan")
        result["pixel_note"] = f"no ground-truth masks for category {category!r}"
    else:
        result["pixel_auroc"], note_auroc = _metric(metric_fns.pixel_auroc, masks.numpy(), maps.numpy())
        result["pixel_aupro"], note_aupro = _metric(metric_fns.aupro, masks.numpy(), maps.numpy())
        result["pixel_note"] = "; ".join(dict.fromkeys(n for n in (note_auroc, note_aupro) if n))
    return result


def mean_row(per_category: dict[str, dict]) -> dict:
    """The mean over categories of each metric, ignoring NaN; the note says what was left out."""
    row: dict = {"n_test": sum(r["n_test"] for r in per_category.values()),
                 "n_good": sum(r["n_good"] for r in per_category.values()),
                 "n_defective": sum(r["n_defective"] for r in per_category.values())}
    for kind, names in (("image", IMAGE_METRICS), ("pixel", PIXEL_METRICS)):
        left_out = set()
        for name in names:
            if not all(name in r for r in per_category.values()):
                continue
            values = [r[name] for r in per_category.values()]
            finite = [v for v in values if not math.isnan(v)]
            left_out |= {c for c, r in per_category.items() if math.isnan(r[name])}
            row[name] = float(np.mean(finite)) if finite else float("nan")
        row[f"{kind}_note"] = (f"mean over {len(per_category) - len(left_out)} of {len(per_category)} "
                               f"categories; undefined for {', '.join(sorted(left_out))}"
                               if left_out else "")
    return row


def metrics_table(metrics: dict) -> pd.DataFrame:
    """Per-category rows plus a ``mean`` row, columns n_test .. pixel_note."""
    rows = {**metrics["per_category"], "mean": metrics["mean"]}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "category"
    columns = ["n_test", "n_good", "n_defective", *METRIC_NAMES,
               *(f"{name}_ci" for name in IMAGE_METRICS), "image_note", "pixel_note"]
    return frame[[c for c in columns if c in frame.columns]]


def format_table(table: pd.DataFrame) -> str:
    """The table as text: metrics to 3 decimals, notes below it."""
    shown = table[[c for c in table.columns if not c.endswith(("_note", "_ci"))]].copy()
    for column in METRIC_NAMES:
        if column in shown:
            shown[column] = shown[column].map(lambda v: "nan" if math.isnan(v) else f"{v:.3f}")
    lines = [shown.to_string()]
    for category, row in table.iterrows():
        for column in ("image_note", "pixel_note"):
            if column in table and row[column]:
                lines.append(f"  {category}: {row[column]}")
    return "\n".join(lines)


# Settings that change how a trained model is scored, not how it is trained.
EVAL_FIELDS = (*SCORING_FIELDS, "batch_size", "num_workers", "device")


def evaluate_run(run, data_root: str | Path | None = None, *, device=None, quiet: bool = True,
                 overrides: dict | list[str] | None = None,
                 epoch: int | None = None) -> tuple[dict, pd.DataFrame]:
    """Evaluate a run (a Run, run folder or run id prefix) on ``data_root`` (default: the data it
    was trained on). ``overrides`` may change the evaluation settings (EVAL_FIELDS, e.g.
    ``{"anomaly_map": "ssim", "smooth_sigma": 4}``) without retraining; ``epoch`` scores the
    weights kept after that epoch (one of ``run.snapshots()``) instead of the final ones.
    Returns (metrics dict with the evaluation keys of metrics.json, scores DataFrame)."""
    run = run if isinstance(run, Run) else load_run(run)
    config = run.config
    if overrides:
        keys = overrides.keys() if isinstance(overrides, dict) else [o.partition("=")[0].strip()
                                                                       for o in overrides]
        training_keys = [k for k in keys if k not in EVAL_FIELDS]
        if training_keys:
            raise ValueError(f"{', '.join(training_keys)} would change the trained model; evaluation "
                             f"can only change {', '.join(EVAL_FIELDS)}")
        config = config.with_overrides(overrides).validate()
    device = torch.device(device) if device is not None else select_device(config.device)
    model = run.load_model(device, epoch=epoch)
    evaluation, scores = evaluate_model(model, config, data_root, device=device, quiet=quiet)
    evaluation["run"] = run.id
    evaluation["epoch"] = epoch if epoch is not None else config.epochs
    evaluation["evaluation"]["overrides"] = {k: getattr(config, k) for k in EVAL_FIELDS
                                             if getattr(config, k) != getattr(run.config, k)}
    return evaluation, scores


def evaluate_twin(config: TrainConfig, twin: Run, path: Path, quiet: bool) -> Run:
    """A run trained exactly as ``twin`` but scored differently: its training is copied, not
    repeated, and the test split is evaluated with ``config``'s scoring settings."""
    with runs_module.run_lock(path):
        runs_module.copy_training(twin.path, path)
        runs_module.atomic_write_text(path / runs_module.CONFIG_FILE, config.to_yaml())
        device = select_device(config.device)
        evaluation, scores = evaluate_model(twin.load_model(device), config, device=device,
                                            quiet=quiet)
        source = twin.metrics
        metrics = {
            "run": path.name,
            "config_hash": config.hash(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {**source["data"], "test_counts": evaluation.pop("test_counts")},
            "training": {**source["training"], "trained_in": twin.id},
            "history": source["history"],
            **evaluation,
            "versions": versions(),
            "config": config.to_dict(),
        }
        runs_module.write_csv(path / runs_module.SCORES_FILE, scores)
        runs_module.write_json(path / runs_module.METRICS_FILE, metrics)
        runs_module.atomic_write_text(path / runs_module.DONE_FILE, metrics["finished"] + "\n")
    if not quiet:
        print(f"trained as run {twin.id}; evaluated with this run's scoring")
        print(format_table(metrics_table(metrics)))
    return Run(path)


# ------------------------------------------------------------------ scoring new images
def find_images(inputs) -> list[Path]:
    """Image files named, or found (recursively, sorted) in folders named; masks and hidden files skipped."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if _is_sample_file(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such image or folder: {path}")
    if not found:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def score_images(run, inputs, out: str | Path, *, category: str | None = None, device=None,
                 heatmaps: bool = True, quiet: bool = True) -> pd.DataFrame:
    """Score new images with a run's model: writes ``out/scores.csv`` and, per image,
    ``out/<index>_<name>.png`` (image, reconstruction, anomaly map side by side). When the run's
    maps are standardised per pixel, the images are measured against ``category``'s training
    images (needed when the run was trained on more than one category)."""
    run = run if isinstance(run, Run) else load_run(run)
    config = run.config
    paths = find_images(inputs)
    device = torch.device(device) if device is not None else select_device(config.device)
    model = run.load_model(device)
    statistics = None
    if config.map_standardization == "per_pixel":
        statistics = fit_map_statistics(model, config, device=device)
        known = sorted(statistics.mean)
        if category is None and len(known) > 1:
            raise ValueError(f"this run standardises its maps per category: name the images' "
                             f"category (one of {', '.join(known)})")
        category = category if category is not None else known[0]
        if category not in known:
            raise ValueError(f"category {category!r} is not one the run was trained on "
                             f"({', '.join(known)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for start in tqdm(range(0, len(paths), config.batch_size), desc="score", leave=False,
                      disable=quiet):
        chunk = paths[start:start + config.batch_size]
        images = torch.stack([read_image(p, config.image_size) for p in chunk])
        recon, maps = reconstruct_and_map(model, config, images, range(start, start + len(chunk)),
                                          device)
        if statistics is not None:
            maps = statistics.standardize(maps, [category] * len(chunk))
        scores = image_scores(images, recon, maps, config)
        for i, path in enumerate(chunk):
            row = {"path": str(path), **{k: float(v[i]) for k, v in scores.items()}}
            if heatmaps:
                picture = out / f"{start + i:04d}_{path.stem}.png"
                save_heatmap(picture, images[i], recon[i], maps[i], title=f"{path.name}  "
                             f"score={row[f'score_{config.score_reduction}']:.5f}")
                row["heatmap"] = str(picture)
            rows.append(row)
    frame = pd.DataFrame(rows)
    write_csv(out / "scores.csv", frame)
    return frame


def save_heatmap(path: Path, image: torch.Tensor, recon: torch.Tensor, amap: torch.Tensor,
                 title: str = "") -> None:
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    figure = Figure(figsize=(9, 3.3))
    axes = figure.subplots(1, 3)
    axes[0].imshow(image.permute(1, 2, 0).numpy())
    axes[0].set_title("image")
    axes[1].imshow(recon.permute(1, 2, 0).numpy())
    axes[1].set_title("reconstruction")
    shown = axes[2].imshow(amap.numpy(), cmap="inferno")
    axes[2].set_title("anomaly map")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
