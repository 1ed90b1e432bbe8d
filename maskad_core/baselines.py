"""Training-free detectors: the floor under every number the masked autoencoder reports.

Neither detector learns anything: each is fitted per category on the same normal training images the
MAE would see (same ``max_train_images_per_category`` selection, same ``image_size``, same loader and
[0, 1] float images, no augmentation) and returns anomaly maps (B, H, W) like the MAE's, so the
existing smoothing, score reductions, metrics and tables consume them unchanged.

- ``PixelGaussian``: the mean and std of the normal images at each pixel and channel; the map is the
  squared z-score averaged over channels.
- ``PixelNearestNeighbour``: at each pixel, the smallest squared error (averaged over channels) to
  any normal training image at that pixel; computed in chunks under a stated memory bound.

Both compare pixels at fixed positions: they are strong where the parts are aligned (bottle) and
weak where they are not (screw, whose parts are rotated). ``evaluate_baseline`` scores a data set's
test split and returns what ``evaluate.evaluate_model`` returns. The headline is the image AUROC of
the max of the map smoothed with sigma 2 (``HEADLINE_METRIC``); every reduction is computed.
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
from maskad_core.evaluate import category_metrics, mean_row
from maskad_core.splits import limit_per_category

METHODS = ("gaussian", "nn")
HEADLINE_METRIC = "image_auroc_max"
DEFAULT_SMOOTH_SIGMA = 2.0
# Std floor of the Gaussian, in [0, 1] intensity units: about 5 of 255 grey levels, the size of
# sensor noise. A pixel that never changed in training (one training image, a saturated background)
# would otherwise divide by zero, or turn one grey level of noise into a huge z-score.
STD_FLOOR = 0.02
# Largest temporary of the nearest-neighbour search: 256 MiB of test-minus-training differences.
DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
_FLOAT_BYTES = 4


def _check_images(images: Tensor, what: str) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{what} must be a (B, C, H, W) tensor, got {shape}")
    if images.shape[0] == 0:
        raise ValueError(f"{what} is empty: no images")
    return images.float()


class _Detector:
    """Shared checks: fit on (N, C, H, W) normal images, then map (B, C, H, W) images of that size."""

    name = ""
    image_shape: tuple[int, int, int] | None = None

    def fit(self, images: Tensor) -> _Detector:
        images = _check_images(images, f"{self.name}: the training images")
        self.image_shape = tuple(images.shape[1:])
        self._fit(images)
        return self

    def anomaly_map(self, images: Tensor, smooth_sigma: float = 0.0) -> Tensor:
        """(B, H, W) anomaly maps, blurred by ``scoring.gaussian_smooth`` when smooth_sigma > 0."""
        if self.image_shape is None:
            raise ValueError(f"{self.name}: fit the detector on normal training images first")
        images = _check_images(images, f"{self.name}: the images to score")
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.name}: images of shape (C, H, W) {tuple(images.shape[1:])} do "
                             f"not match the training images' {self.image_shape}; use one image_size")
        return scoring.gaussian_smooth(self._map(images), float(smooth_sigma))


class PixelGaussian(_Detector):
    """Per pixel and channel, the mean and std (floored at ``std_floor``) of the normal images; the
    map is the squared z-score averaged over channels (rank-equal to the sum)."""

    name = "gaussian"

    def __init__(self, std_floor: float = STD_FLOOR):
        if not (std_floor > 0 and math.isfinite(std_floor)):
            raise ValueError(f"std_floor must be a finite number > 0, got {std_floor!r}")
        self.std_floor = float(std_floor)

    def _fit(self, images: Tensor) -> None:
        # population std (correction 0): defined for a single image, where it is 0 and the floor holds
        std, self.mean = torch.std_mean(images, dim=0, correction=0)
        self.std = std.clamp_min(self.std_floor)

    def _map(self, images: Tensor) -> Tensor:
        return ((images - self.mean) / self.std).square().mean(dim=1)


def chunk_sizes(n_test: int, n_train: int, bytes_per_pair: int, max_chunk_bytes: int) -> tuple[int, int]:
    """(test images, training images) per chunk such that their pairs' differences fit in
    ``max_chunk_bytes``: as many training images as fit, then as many test images; at least one each."""
    pairs = max(1, max_chunk_bytes // bytes_per_pair)
    train = max(1, min(n_train, pairs))
    test = max(1, min(n_test, pairs // train))
    return test, train


class PixelNearestNeighbour(_Detector):
    """At each pixel, the smallest squared error (averaged over channels) to any normal training
    image at that pixel.

    Memory bound: the largest temporary is the (b, m, C, H, W) float32 difference of b test and
    m training images, kept within ``max_chunk_bytes`` (at least one pair per chunk, so a single
    image pair larger than the bound still runs); with the (b, m, H, W) distances beside it, scoring
    needs at most (1 + 1/C) x max_chunk_bytes beyond the stored training images (N x C x H x W x 4
    bytes) and the images being scored. 320 screw images at 224 px: 193 MB stored + 341 MB.
    """

    name = "nn"

    def __init__(self, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES):
        if isinstance(max_chunk_bytes, bool) or not isinstance(max_chunk_bytes, (int, np.integer)) \
                or max_chunk_bytes < 1:
            raise ValueError(f"max_chunk_bytes must be a positive integer, got {max_chunk_bytes!r}")
        self.max_chunk_bytes = int(max_chunk_bytes)

    def _fit(self, images: Tensor) -> None:
        self.train_images = images

    def _map(self, images: Tensor) -> Tensor:
        n_train = self.train_images.shape[0]
        bytes_per_pair = math.prod(self.image_shape) * _FLOAT_BYTES
        n_test_chunk, n_train_chunk = chunk_sizes(images.shape[0], n_train, bytes_per_pair,
                                                  self.max_chunk_bytes)
        maps = []
        for test in images.split(n_test_chunk):
            best = torch.full((test.shape[0], *test.shape[2:]), math.inf)
            for train in self.train_images.split(n_train_chunk):
                difference = test[:, None] - train[None]  # (b, m, C, H, W): the bounded temporary
                distances = difference.square_().mean(dim=2)
                torch.minimum(best, distances.amin(dim=1), out=best)
            maps.append(best)
        return torch.cat(maps)


def make_detector(method: str, *, std_floor: float = STD_FLOOR,
                  max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> _Detector:
    """A fresh detector: "gaussian" (``PixelGaussian``) or "nn" (``PixelNearestNeighbour``)."""
    if method == "gaussian":
        return PixelGaussian(std_floor)
    if method == "nn":
        return PixelNearestNeighbour(max_chunk_bytes)
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


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
