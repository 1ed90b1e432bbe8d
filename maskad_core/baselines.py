"""Training-free detectors scored on a test split: ``evaluate_baseline`` fits a detector of
:mod:`maskad_core.detectors` per category on the normal training images (same
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

from maskad_core import scoring
from maskad_core.data import MVTecAD
from maskad_core.detectors import (
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_SMOOTH_SIGMA,
    HEADLINE_METRIC,
    METHODS,
    STD_FLOOR,
    make_detector,
)
from maskad_core.evaluate import category_metrics, mean_row
from maskad_core.splits import limit_per_category

__all__ = ["METHODS", "HEADLINE_METRIC", "DEFAULT_SMOOTH_SIGMA", "evaluate_baseline", "load_split"]


def load_split(root: str | Path, category: str, split: str, image_size: int,
               limit: int | None = None) -> tuple[Tensor, Tensor, list]:
    """(images (N, 3, S, S) in [0, 1], masks (N, S, S) bool, data.Sample records) of one category's
    split, at most ``limit`` images chosen as the MAE's training and evaluation choose them."""
    dataset = MVTecAD(root, categories=[category], split=split, image_size=image_size)
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
                      std_floor: float = STD_FLOOR,
                      max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> tuple[dict, pd.DataFrame]:
    """Fit ``method`` per category on the normal training images and score the test split.

    ``data_root`` None is the embedded synthetic set, as for ``maskad train``. Returns what
    ``evaluate.evaluate_model`` returns: (evaluation dict with per_category, mean, image_auroc (the
    eq. 1 mean reduction, as there), evaluation, test_counts; scores DataFrame, one row per test
    image). Each category's row also holds n_train, load_s (decoding both splits), fit_s and
    score_s (maps, smoothing and reductions); the headline metric is ``HEADLINE_METRIC``.
    """
    make_detector(method, std_floor=std_floor, max_chunk_bytes=max_chunk_bytes)  # bad settings first
    _check_limit("max_train_images_per_category", max_train_images_per_category)
    _check_limit("max_test_images_per_category", max_test_images_per_category)
    if not (smooth_sigma >= 0 and math.isfinite(smooth_sigma)):
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {smooth_sigma!r}")
    if not (0 < topk_fraction <= 1):
        raise ValueError(f"topk_fraction must be in (0, 1], got {topk_fraction!r}")
    synthetic = data_root is None
    if synthetic:
        from maskad_core.synthetic import default_data_root

        data_root = default_data_root()
    root = Path(data_root).expanduser()
    categories = MVTecAD(root, categories=categories, split="test", image_size=image_size).categories
    per_category, frames = {}, []
    for category in categories:
        started = time.perf_counter()
        train_images, _, _ = load_split(root, category, "train", image_size,
                                        max_train_images_per_category)
        test_images, masks, samples = load_split(root, category, "test", image_size,
                                                 max_test_images_per_category)
        load_s = time.perf_counter() - started

        started = time.perf_counter()
        detector = make_detector(method, std_floor=std_floor, max_chunk_bytes=max_chunk_bytes)
        detector.fit(train_images)
        fit_s = time.perf_counter() - started

        started = time.perf_counter()
        maps = detector.anomaly_map(test_images, smooth_sigma)
        scores = {f"score_{r}": scoring.image_score(maps, r, topk_fraction).numpy()
                  for r in scoring.REDUCTIONS}
        score_s = time.perf_counter() - started

        rows = pd.DataFrame({"path": [str(s.path) for s in samples],
                             "category": category,
                             "defect_type": [s.defect_type for s in samples],
                             "label": [int(s.label) for s in samples], **scores})
        # a defective image whose mask is missing has an all-zero one: keep it out of pixel metrics
        with_mask = torch.tensor([s.has_mask for s in samples])
        pixel = (maps[with_mask], masks[with_mask]) if with_mask.any() else (None, None)
        per_category[category] = {**category_metrics(rows, *pixel, category, headline="max"),
                                  "n_train": int(train_images.shape[0]), "load_s": load_s,
                                  "fit_s": fit_s, "score_s": score_s}
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True)
    mean = mean_row(per_category)
    totals = {key: sum(row[key] for row in per_category.values())
              for key in ("load_s", "fit_s", "score_s")}
    evaluation = {
        "per_category": per_category,
        "mean": mean,
        "image_auroc": mean[HEADLINE_METRIC],
        "evaluation": {"method": method, "training_free": True, "data_root": str(root),
                       "synthetic": synthetic, "image_size": image_size,
                       "max_train_images_per_category": max_train_images_per_category,
                       "max_test_images_per_category": max_test_images_per_category,
                       "smooth_sigma": smooth_sigma, "topk_fraction": topk_fraction,
                       "headline": HEADLINE_METRIC,
                       **({"std_floor": std_floor} if method == "gaussian"
                          else {"max_chunk_bytes": max_chunk_bytes}),
                       "device": "cpu", **totals,
                       "wall_time_s": sum(totals.values()),
                       "images_per_s": len(frame) / max(totals["score_s"], 1e-9)},
        "test_counts": {c: {"good": row["n_good"], "defective": row["n_defective"]}
                        for c, row in per_category.items()},
    }
    return evaluation, frame
