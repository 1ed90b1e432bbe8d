"""What every detector shares: its declared settings (defaults and validation in one place), the
checks on the images it is fitted on and scores, and the chunking of pairwise computations.

A detector class lists its settings in ``settings`` ({name: Setting}); ``Detector.__init__`` takes
them by keyword (or positionally, in declaration order), refuses a setting the class does not
declare (naming it and the allowed ones), validates each value with its ``Setting.check`` and sets
it as an attribute. ``make_detector`` (in ``maskad_core.evaluation.detectors``) builds detectors by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from maskad_core import scoring

# Largest temporary of a chunked search (differences or distances): 256 MiB.
DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Setting:
    """One setting of a detector: its default, its check (name, value) -> the value to use, raising
    ValueError on a bad one, and one line saying what it is."""

    default: Any
    check: Callable[[str, Any], Any]
    help: str = ""


def positive_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nonnegative_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def boolean(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def one_of(*choices: str) -> Callable[[str, Any], str]:
    def check(name: str, value) -> str:
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value
    return check


def check_images(images: Tensor, what: str) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{what} must be a (B, C, H, W) tensor, got {shape}")
    if images.shape[0] == 0:
        raise ValueError(f"{what} is empty: no images")
    return images.float()


def check_smooth_sigma(sigma) -> float:
    if not (sigma >= 0.0 and math.isfinite(sigma)):
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def chunk_sizes(n_test: int, n_train: int, bytes_per_pair: int, max_chunk_bytes: int) -> tuple[int, int]:
    """(test items, training items) per chunk such that their pairs' temporaries fit in
    ``max_chunk_bytes``: as many training items as fit, then as many test items; at least one each."""
    pairs = max(1, max_chunk_bytes // bytes_per_pair)
    train = max(1, min(n_train, pairs))
    test = max(1, min(n_test, pairs // train))
    return test, train


class Detector:
    """Fit on (N, C, H, W) normal images in [0, 1], then map (B, C, H, W) images of that size to
    (B, H, W) anomaly maps. Subclasses set ``name``, ``settings`` and implement ``_fit``, ``_map``;
    ``constant_map`` marks a detector whose map is one number per image (no localisation: pixel
    metrics of it mean nothing, and smoothing leaves it unchanged, so it is skipped)."""

    name: ClassVar[str] = ""
    settings: ClassVar[dict[str, Setting]] = {}
    constant_map: ClassVar[bool] = False
    image_shape: tuple[int, int, int] | None = None

    def __init__(self, *args, **kwargs):
        names = list(self.settings)
        if len(args) > len(names):
            raise TypeError(f"{self.name}: at most {len(names)} positional settings "
                            f"({', '.join(names) or 'none'}), got {len(args)}")
        given = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key in given:
                raise TypeError(f"{self.name}: setting {key!r} given twice")
            given[key] = value
        for key in given:
            if key not in self.settings:
                raise ValueError(f"unknown setting {key!r} for detector {self.name!r}; its settings: "
                                 f"{self.describe_settings()}")
        for key, setting in self.settings.items():
            setattr(self, key, setting.check(key, given.get(key, setting.default)))
        self._check_settings()

    @classmethod
    def describe_settings(cls) -> str:
        """"a (default 1), b (default 'x')", or "none"."""
        return ", ".join(f"{k} (default {s.default!r})" for k, s in cls.settings.items()) or "none"

    def get_settings(self) -> dict[str, Any]:
        """The settings this detector was built with, by name (for records and tables)."""
        return {key: getattr(self, key) for key in self.settings}

    def _check_settings(self) -> None:
        """Checks across settings (one setting's checks are in its ``Setting``)."""

    def fit(self, images: Tensor) -> Detector:
        images = check_images(images, f"{self.name}: the training images")
        self.image_shape = tuple(images.shape[1:])
        self._fit(images)
        return self

    def _checked(self, images: Tensor) -> Tensor:
        if self.image_shape is None:
            raise ValueError(f"{self.name}: fit the detector on normal training images first")
        images = check_images(images, f"{self.name}: the images to score")
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.name}: images of shape (C, H, W) {tuple(images.shape[1:])} do "
                             f"not match the training images' {self.image_shape}; use one image_size")
        return images

    def anomaly_map(self, images: Tensor, smooth_sigma: float = 0.0) -> Tensor:
        """(B, H, W) anomaly maps, blurred by ``scoring.gaussian_smooth`` when smooth_sigma > 0."""
        images = self._checked(images)
        sigma = check_smooth_sigma(smooth_sigma)
        maps = self._map(images)
        return maps if self.constant_map else scoring.gaussian_smooth(maps, sigma)

    def _fit(self, images: Tensor) -> None:
        raise NotImplementedError

    def _map(self, images: Tensor) -> Tensor:
        raise NotImplementedError
