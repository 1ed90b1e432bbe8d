"""Training-free detectors: the floor under every number the masked autoencoder reports.

Each detector learns nothing: it is fitted per category on the same normal training images the MAE
would see and returns anomaly maps (B, H, W) like the MAE's, so the same smoothing, reductions,
metrics and tables consume them (``baselines.evaluate_baseline``).

- ``PixelGaussian``: the mean and std of the normal images at each pixel and channel; the map is the
  squared z-score averaged over channels.
- ``PixelNearestNeighbour``: at each pixel, the smallest squared error (averaged over channels) to
  any normal training image at that pixel; computed in chunks under a stated memory bound.

Both compare pixels at fixed positions: they are strong where the parts are aligned (bottle) and
weak where they are not (screw, whose parts are rotated). Every detector is declared once, in
``DETECTORS``; ``make_detector`` builds one by name.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from maskad_core import scoring

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


