"""The study's numbers over training seeds: one model per seed, per category the seeds' AUROCs,
their mean and standard deviation, and a 95% bootstrap interval of the mean over test images.

Every headline the book prints (Table 1, the mean row, the masking comparison, the floor) comes
from :func:`arm_statistics` over the runs of :func:`train_seeds`, in the notebooks and in the
benchmark record alike, so a page never shows one seed's value beside another page's mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from maskad_core.evaluation.baselines import FLOOR_METHODS, PROBE_METHODS, evaluate_baseline
from maskad_core.metrics import (
    image_auroc,
    seeds_auroc_difference_interval,
    seeds_auroc_interval,
    seeds_mean_auroc_interval,
)
from maskad_core.training.config import TrainConfig

MEAN = "mean"  # the row over categories


@dataclasses.dataclass(frozen=True)
class SeedStatistic:
    """One AUROC over training seeds: the values, their mean, sample standard deviation (0 for one
    seed) and the 95% bootstrap interval of the mean over test images (every seed on the same
    resampled images)."""

    seeds: tuple[float, ...]
    mean: float
    std: float
    interval: tuple[float, float]

    @classmethod
    def of(cls, values: Sequence[float], interval) -> SeedStatistic:
        values = tuple(float(v) for v in values)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return cls(values, float(np.mean(values)), std, (float(interval[0]), float(interval[1])))

    def to_dict(self) -> dict:
        return {"seeds": list(self.seeds), "mean": self.mean, "std": self.std, "ci": list(self.interval)}


def train_seeds(config: TrainConfig, seeds: Sequence[int], **overrides) -> list:
    """One finished run per seed (cached runs are re-used), the config otherwise the same."""
    from maskad_core.evaluation.run_record import (
        train_and_evaluate,  # torch: imported where it is needed
    )

    if not seeds:
        raise ValueError("seeds must name at least one training seed, got an empty list")
    return [train_and_evaluate(dataclasses.replace(config, seed=int(seed), **overrides), quiet=True) for seed in seeds]


def _aligned(frames: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    """The runs' per-image frames in one order (by path), checked to score the same images."""
    ordered = [frame.sort_values("path").reset_index(drop=True) for frame in frames]
    for frame in ordered[1:]:
        if not frame["path"].equals(ordered[0]["path"]):
            raise ValueError("the runs did not score the same test images: seeds must share data "
                             "and test split")
    return ordered


def score_matrix(frames: Sequence[pd.DataFrame], category: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,), scores (S, N)) of one category: the S runs' ``column`` on the same N images."""
    rows = [frame[frame["category"] == category] for frame in _aligned(frames)]
    return rows[0]["label"].to_numpy().astype(bool), np.stack([r[column].to_numpy() for r in rows])


def arm_statistics(frames: Sequence[pd.DataFrame], column: str) -> dict[str, SeedStatistic]:
    """Per category and for the mean over categories (key ``MEAN``), the seeds' image AUROC of the
    score ``column`` of the runs' per-image frames (one frame per seed)."""
    out, groups = {}, []
    for category in sorted(frames[0]["category"].unique()):
        labels, scores = score_matrix(frames, category, column)
        if labels.all() or not labels.any():
            continue  # one class only: no AUROC, and out of the mean, as in the metrics tables
        groups.append((labels, scores))
        out[category] = SeedStatistic.of([image_auroc(labels, row) for row in scores],
                                         seeds_auroc_interval(labels, scores))
    per_seed = np.mean([out[c].seeds for c in out], axis=0)
    out[MEAN] = SeedStatistic.of(per_seed, seeds_mean_auroc_interval(groups))
    return out


def paired_differences(frames_a: Sequence[pd.DataFrame], frames_b: Sequence[pd.DataFrame],
                       column: str) -> dict[str, tuple[float, float]]:
    """Per category and for the mean over categories (``MEAN``): the 95% bootstrap interval of arm
    A's seed-mean image AUROC minus arm B's, both scoring the same test images (the same resampled
    images for both arms in every resample)."""
    aligned = _aligned([*frames_a, *frames_b])
    a_frames, b_frames = aligned[:len(frames_a)], aligned[len(frames_a):]
    out, groups = {}, []
    for category in sorted(a_frames[0]["category"].unique()):
        labels, a = score_matrix(a_frames, category, column)
        _, b = score_matrix(b_frames, category, column)
        if labels.all() or not labels.any():
            continue
        groups.append((labels, a, b))
        out[category] = seeds_auroc_difference_interval([(labels, a, b)])
    if groups:
        out[MEAN] = seeds_auroc_difference_interval(groups)
    return out


def pixel_auroc_over_seeds(runs: Sequence) -> dict[str, SeedStatistic]:
    """Per category the seeds' pixel AUROC (from each run's metrics; no interval: NaN)."""
    categories = list(runs[0].metrics["per_category"])
    values = {c: [run.metrics["per_category"][c]["pixel_auroc"] for run in runs] for c in categories}
    out = {c: SeedStatistic.of(v, (np.nan, np.nan)) for c, v in values.items()
           if np.all(np.isfinite(v))}
    if out:
        out[MEAN] = SeedStatistic.of(np.mean([s.seeds for s in out.values()], axis=0), (np.nan, np.nan))
    return out


@dataclasses.dataclass(frozen=True)
class DetectorResult:
    """A training-free detector on one category: image AUROC (max of its smoothed map), its 95%
    interval over test images, and pixel AUROC (NaN without masks)."""

    auroc: float
    interval: tuple[float, float]
    pixel_auroc: float


def detector_results(config: TrainConfig, methods: Sequence[str] = (*FLOOR_METHODS, *PROBE_METHODS),
                     control: str | None = None) -> dict[str, dict[str, DetectorResult]]:
    """{method: {category: DetectorResult}} for every training-free detector, fitted on the
    config's training images at its size and scored on its test split; ``control`` (default: the
    config's image_standardization) reads the images as the model's control does."""
    control = config.image_standardization if control is None else control
    out = {}
    for method in methods:
        evaluation, _ = evaluate_baseline(
            method, config.data_root, config.categories, config.image_size,
            config.max_train_images_per_category, config.max_test_images_per_category,
            non_square=config.non_square, image_standardization=control)
        out[method] = {c: DetectorResult(float(v["image_auroc_max"]), tuple(v["image_auroc_max_ci"]),
                                         float(v["pixel_auroc"]))
                       for c, v in evaluation["per_category"].items()}
    return out


def best_detector(detectors: Mapping[str, Mapping[str, DetectorResult]], category: str,
                  *, pixel: bool = False) -> tuple[str, float]:
    """The detector with the highest image (or pixel) AUROC on ``category``: (method, value)."""
    values = {method: (rows[category].pixel_auroc if pixel else rows[category].auroc)
              for method, rows in detectors.items() if category in rows}
    values = {m: v for m, v in values.items() if np.isfinite(v)}
    if not values:
        return "-", float("nan")
    method = max(values, key=values.get)
    return method, values[method]
