"""Training-free detectors scored on a test split: ``evaluate_baseline`` fits a detector of
:mod:`maskad_core.evaluation.detectors` per category on the normal training images (same
``max_train_images_per_category`` selection, same ``image_size``, same loader and [0, 1] float images,
no augmentation as the MAE) and scores the test split through the evaluation path the model uses.
The headline is the image AUROC of the max of the map smoothed with sigma 2 (``HEADLINE_METRIC``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from maskad_core.data import synthetic
from maskad_core.data.mvtec import MVTecAD
from maskad_core.evaluation.detectors import (
    DEFAULT_SMOOTH_SIGMA,
    FLOOR_METHODS,
    HEADLINE_METRIC,
    METHODS,
    PROBE_METHODS,
    make_detector,
)
from maskad_core.evaluation.results import score_split
from maskad_core.training.splits import limit_per_category

__all__ = ["METHODS", "FLOOR_METHODS", "PROBE_METHODS", "HEADLINE_METRIC", "DEFAULT_SMOOTH_SIGMA", "evaluate_baseline", "load_split"]


def load_split(root: str | Path, category: str, split: str, image_size: int,
               limit: int | None = None, **image_options) -> tuple[Tensor, Tensor, list]:
    """(images (N, 3, S, S) in [0, 1], masks (N, S, S) bool, data.Sample records) of one category's
    split, at most ``limit`` images chosen as the MAE's training and evaluation choose them;
    ``image_options``: ``non_square`` and ``image_standardization``, as ``data.MVTecAD`` takes them."""
    dataset = MVTecAD(root, categories=[category], split=split, image_size=image_size,
                      **image_options)
    indices = range(len(dataset)) if limit is None else limit_per_category(dataset, limit)
    items = [dataset[i] for i in indices]
    images = torch.stack([item["image"] for item in items])
    masks = torch.stack([item["mask"][0] for item in items]).bool()
    return images, masks, [dataset.samples[i] for i in indices]


def _check_limit(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 1):
        raise ValueError(f"{name} must be a positive integer or None (all images), got {value!r}")


def evaluate_baseline(method: str, data_root: str | Path | None = None, categories=None,
                      image_size: int = 128, max_train_images_per_category: int | None = None,
                      max_test_images_per_category: int | None = None, *,
                      smooth_sigma: float = DEFAULT_SMOOTH_SIGMA, topk_fraction: float = 0.01,
                      non_square: str = "squash", image_standardization: str = "none",
                      **detector_settings) -> tuple[dict, pd.DataFrame]:
    """Fit ``method`` per category on the normal training images and score the test split.

    ``data_root`` None is the embedded synthetic set, as for ``maskad train``; ``non_square`` and
    ``image_standardization`` read the images as the model's configuration of those names does
    (the latter is the study's control); ``detector_settings`` go to ``detectors.make_detector``. Returns what
    ``evaluate.evaluate_model`` returns: (evaluation dict with per_category, mean, image_auroc (the
    headline, ``HEADLINE_METRIC``), evaluation, test_counts; the scores frame of
    ``results.score_split``, one row per test image). Each category's row also holds n_train,
    load_s (decoding both splits), fit_s and score_s (maps and smoothing).
    """
    make_detector(method, **detector_settings)  # bad settings fail before any image is read
    _check_limit("max_train_images_per_category", max_train_images_per_category)
    _check_limit("max_test_images_per_category", max_test_images_per_category)
    if not (smooth_sigma >= 0 and math.isfinite(smooth_sigma)):
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {smooth_sigma!r}")
    if not (0 < topk_fraction <= 1):
        raise ValueError(f"topk_fraction must be in (0, 1], got {topk_fraction!r}")
    generated = data_root is None
    root = Path(synthetic.default_data_root() if generated else data_root).expanduser()
    images = {"non_square": non_square, "image_standardization": image_standardization}
    categories = MVTecAD(root, categories=categories, split="test", image_size=image_size,
                         **images).categories
    parts, timings = [], {}
    for category in categories:
        maps, masks, samples, timings[category] = _category_maps(
            method, detector_settings, root, category, image_size, smooth_sigma,
            (max_train_images_per_category, max_test_images_per_category), images)
        parts.append((maps, masks, samples))
    scored = score_split([s for _, _, samples in parts for s in samples],
                         torch.cat([maps for maps, _, _ in parts]),
                         torch.cat([masks for _, masks, _ in parts]),
                         headline=HEADLINE_METRIC.removeprefix("image_auroc_"),
                         topk_fraction=topk_fraction, categories=categories)
    per_category = {c: {**row, **timings[c]} for c, row in scored.per_category.items()}
    totals = {key: sum(t[key] for t in timings.values()) for key in ("load_s", "fit_s", "score_s")}
    evaluation = {
        "per_category": per_category,
        "mean": scored.mean,
        "image_auroc": scored.mean[HEADLINE_METRIC],
        "evaluation": {"method": method, "training_free": True, "data_root": str(root),
                       "synthetic": generated, "image_size": image_size,
                       "max_train_images_per_category": max_train_images_per_category,
                       "max_test_images_per_category": max_test_images_per_category,
                       "smooth_sigma": smooth_sigma, "topk_fraction": topk_fraction,
                       "headline": HEADLINE_METRIC, **images, **detector_settings,
                       "device": "cpu", **totals, "wall_time_s": sum(totals.values()),
                       "images_per_s": len(scored.frame) / max(totals["score_s"], 1e-9)},
        "test_counts": scored.test_counts,
    }
    return evaluation, scored.frame


def _category_maps(method: str, settings: dict, root: Path, category: str, image_size: int,
                   smooth_sigma: float, limits: tuple[int | None, int | None], images: dict):
    """(maps, masks, samples, timings) of one category's test split under a detector fitted on its
    normal training images."""
    started = time.perf_counter()
    train_images, _, _ = load_split(root, category, "train", image_size, limits[0], **images)
    test_images, masks, samples = load_split(root, category, "test", image_size, limits[1], **images)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    detector = make_detector(method, **settings).fit(train_images)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    maps = detector.anomaly_map(test_images, smooth_sigma)
    score_s = time.perf_counter() - started
    return maps, masks, samples, {"n_train": int(train_images.shape[0]), "load_s": load_s,
                                  "fit_s": fit_s, "score_s": score_s}
