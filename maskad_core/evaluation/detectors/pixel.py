"""Per-pixel detectors: each compares pixel (x, y) of an image with pixel (x, y) of the normal
training images. Strong where the parts are aligned (bottle), weak by construction where they move
(screw, whose parts are rotated and shifted): see ``patch.PatchNearestNeighbour`` for that case.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from maskad_core.evaluation.detectors.base import (
    DEFAULT_MAX_CHUNK_BYTES,
    FLOAT_BYTES,
    Detector,
    Setting,
    chunk_sizes,
    positive_int,
    positive_number,
)

# Std floor of the Gaussian, in [0, 1] intensity units: about 5 of 255 grey levels, the size of
# sensor noise. A pixel that never changed in training (one training image, a saturated background)
# would otherwise divide by zero, or turn one grey level of noise into a huge z-score.
STD_FLOOR = 0.02


class PixelGaussian(Detector):
    """Per pixel and channel, the mean and std (floored at ``std_floor``) of the normal images; the
    map is the squared z-score averaged over channels (rank-equal to the sum)."""

    name = "gaussian"
    settings = {"std_floor": Setting(STD_FLOOR, positive_number,
                                     "floor of the per-pixel std, in [0, 1] intensity units")}
    std_floor: float

    def _fit(self, images: Tensor) -> None:
        # population std (correction 0): defined for a single image, where it is 0 and the floor holds
        std, self.mean = torch.std_mean(images, dim=0, correction=0)
        self.std = std.clamp_min(self.std_floor)

    def _map(self, images: Tensor) -> Tensor:
        return ((images - self.mean) / self.std).square().mean(dim=1)


class PixelNearestNeighbour(Detector):
    """At each pixel, the smallest squared error (averaged over channels) to any normal training
    image at that pixel.

    Memory bound: the largest temporary is the (b, m, C, H, W) float32 difference of b test and
    m training images, kept within ``max_chunk_bytes`` (at least one pair per chunk, so a single
    image pair larger than the bound still runs); with the (b, m, H, W) distances beside it, scoring
    needs at most (1 + 1/C) x max_chunk_bytes beyond the stored training images (N x C x H x W x 4
    bytes) and the images being scored. 320 screw images at 224 px: 193 MB stored + 341 MB.
    """

    name = "nn"
    settings = {"max_chunk_bytes": Setting(DEFAULT_MAX_CHUNK_BYTES, positive_int,
                                           "largest test-minus-training difference, in bytes")}
    max_chunk_bytes: int

    def _fit(self, images: Tensor) -> None:
        self.train_images = images

    def _map(self, images: Tensor) -> Tensor:
        n_train = self.train_images.shape[0]
        bytes_per_pair = math.prod(self.image_shape) * FLOAT_BYTES
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
