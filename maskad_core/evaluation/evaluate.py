"""A trained model on a test split: its reconstructions, anomaly maps and scores.

Each test image gets its own masks, drawn from a generator seeded by (eval_seed, the image's index in
the test set), so scores do not depend on the batch size. The reconstruction is the model's composite
(eq. 3), the anomaly map ``scoring.anomaly_map``, standardised per pixel where the configuration says
so (``fit_map_statistics``); :func:`maskad_core.evaluation.results.score_split` turns the maps into the per-image
frame and the per-category metrics.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto, which calls iter() on a DataLoader twice

from maskad_core import scoring
from maskad_core.evaluation.results import score_split
from maskad_core.masking import make_masks
from maskad_core.training.config import TrainConfig
from maskad_core.training.runtime import autocast, derive_seed, show_progress
from maskad_core.training.splits import data_root_of, dataset_samples, open_dataset
from maskad_core.training.threads import threads_for

# The settings an evaluation record repeats beside its numbers.
EVALUATION_SETTINGS = ("anomaly_map", "map_standardization", "smooth_sigma", "score_reduction",
                       "topk_fraction", "eval_seed", "test_partitions", "masking", "mask_ratio")


def image_masks(config: TrainConfig, num_patches: int, indices, stream: str = "eval") -> torch.Tensor:
    """(B, n * P, L) masks for the test images with these indices, each image's from its own seeded
    generator: P = ``test_partitions`` independent draws of the evaluation masking, stacked, so that
    eq. 3 averages every patch over all the views of all draws that masked it. ``stream`` names
    the set the indices count in ("eval": the test split, "fit": the training images of
    ``fit_map_statistics``), so the two never share draws. An index may be a string, an image's
    own key (``new_images`` passes its content hash)."""
    generator = torch.Generator()
    out = []
    for index in indices:
        generator.manual_seed(derive_seed(config.eval_seed, stream, _mask_key(index)))
        out.append(torch.cat([make_masks(config.eval_masking, num_patches, config.mask_ratio, generator)
                              for _ in range(config.test_partitions)]))
    return torch.stack(out)


def _mask_key(index) -> int | str:
    # an index counts in a split; a string is an image's own key (new_images: its content hash)
    return index if isinstance(index, str) else int(index)


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
                       device) -> scoring.MapStatistics:
    """Per-pixel statistics of the maps of the normal training images (the images the model was
    trained on, unaugmented, each with its own mask draws), per category: what the model's error
    looks like where nothing is wrong. These images were seen in training, so their errors run
    somewhat lower than on unseen normal images; every test image is measured against the same
    statistics, so the ranking is what matters."""
    device = torch.device(device)
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


def _fit_statistics(model, config: TrainConfig, data_root, device) -> scoring.MapStatistics | None:
    return (fit_map_statistics(model, config, data_root, device=device)
            if scoring.standardizes(config.map_standardization) else None)


@torch.no_grad()
def map_test_split(model, config: TrainConfig, test_set, statistics, device, quiet: bool = True):
    """(maps (N, H, W) standardised when ``statistics`` is given, masks (N, H, W), eq. 1 scores (N,))
    of every image of ``test_set``, in order, each with its own seeded mask draws."""
    loader = DataLoader(test_set, batch_size=config.batch_size, shuffle=False,
                        num_workers=config.num_workers)
    maps, masks, eq1, offset = [], [], [], 0
    for batch in tqdm(loader, desc="evaluate", leave=False, disable=not show_progress(quiet),
                      dynamic_ncols=True):
        count = batch["image"].shape[0]
        recon, batch_maps = reconstruct_and_map(model, config, batch["image"],
                                                range(offset, offset + count), device)
        if statistics is not None:
            batch_maps = statistics.standardize(batch_maps, batch["category"])
        offset += count
        maps.append(batch_maps)
        masks.append(batch["mask"][:, 0].bool())
        eq1.append(scoring.eq1_score(batch["image"].float(), recon).numpy())
    return torch.cat(maps), torch.cat(masks), np.concatenate(eq1)


def evaluate_model(model, config: TrainConfig, data_root: str | Path | None = None, *,
                   device, quiet: bool = True,
                   statistics: scoring.MapStatistics | None = None) -> tuple[dict, pd.DataFrame]:
    """Score the test split of ``data_root`` (default: the config's data) with a trained model.

    ``statistics``: the per-pixel map statistics to standardise with (a run's saved ones); None
    fits them on ``data_root``'s training images when the config standardises its maps.
    ``device``: chosen by the caller (``runtime.select_device``), once per evaluation.
    Returns (evaluation dict with keys per_category, mean, image_auroc, headline_score,
    evaluation, test_counts; scores DataFrame with one row per image).
    """
    device = torch.device(device)
    with threads_for("score-batch", device=device):
        return _evaluate_model(model, config, data_root, device, quiet, statistics)


def _evaluate_model(model, config, data_root, device, quiet, statistics):
    data_root = data_root if data_root is not None else data_root_of(config)
    test_set, full = open_dataset(config, "test", data_root)
    model = model.to(device).eval()
    started = time.perf_counter()
    if statistics is None:
        statistics = _fit_statistics(model, config, data_root, device)
    maps, masks, eq1 = map_test_split(model, config, test_set, statistics, device, quiet)
    seconds = time.perf_counter() - started
    scored = score_split(dataset_samples(test_set), maps, masks, eq1=eq1,
                         headline=config.score_reduction, topk_fraction=config.topk_fraction,
                         categories=full.categories)
    evaluation = {
        "per_category": scored.per_category,
        "mean": scored.mean,
        "image_auroc": scored.mean[f"image_auroc_{config.score_reduction}"],
        "headline_score": headline_description(config),
        "evaluation": {"data_root": str(data_root),
                       **{key: getattr(config, key) for key in EVALUATION_SETTINGS},
                       "test_masking": config.eval_masking, "device": str(device),
                       "wall_time_s": seconds,
                       "images_per_s": len(scored.frame) / max(seconds, 1e-9)},
        "test_counts": scored.test_counts,
    }
    return evaluation, scored.frame


def headline_description(config: TrainConfig) -> str:
    """The study's default image score in words, e.g. "max of the l2_centered map, smoothed (sigma 4)"."""
    smoothing = f", smoothed (sigma {config.smooth_sigma:g})" if config.smooth_sigma > 0 else ""
    standardized = (" and standardised per pixel by the normal training images' maps"
                    if config.map_standardization == "per_pixel" else "")
    return f"{config.score_reduction} of the {config.anomaly_map} map{smoothing}{standardized}"


