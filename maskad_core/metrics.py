"""Detection and segmentation metrics: image AUROC, pixel AUROC and AUPRO (MVTec AD protocol).

All accept numpy arrays or torch tensors. Labels are 0/1 (or bool); masks count as defective where
they exceed 0.5 (resized masks may hold interpolated values). Tied scores count half, as in the
trapezoidal ROC of scikit-learn, so constant scores give an AUROC of 0.5. When only one class is
present a metric is undefined: it returns NaN and emits :class:`UndefinedMetricWarning`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata
from sklearn.exceptions import UndefinedMetricWarning as _SklearnUndefinedMetricWarning

DEFAULT_FPR_LIMIT = 0.3


class UndefinedMetricWarning(_SklearnUndefinedMetricWarning):
    """A metric was asked for on data where it is undefined (e.g. only normal images)."""


def _as_numpy(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object:
        raise ValueError(f"{name} must be numeric, got objects")
    return array


def _scores(values, name: str) -> np.ndarray:
    array = _as_numpy(values, name).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _labels(values, name: str) -> np.ndarray:
    array = _as_numpy(values, name)
    if array.size and not np.all(np.isin(array, (0, 1))):
        raise ValueError(f"{name} must hold only 0/1 (or bool) values, got {np.unique(array)[:10]}")
    return array.astype(bool)


def _undefined(metric: str, why: str) -> float:
    warnings.warn(f"{metric} is undefined: {why}; returning NaN", UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _drop_channel(array: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) -> (N, H, W); other shapes unchanged."""
    return array[:, 0] if array.ndim == 4 and array.shape[1] == 1 else array


def _rank_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count half)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    ranks = rankdata(scores)  # average ranks for ties
    u_statistic = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (float(n_pos) * float(n_neg)))


def image_auroc(labels, scores) -> float:
    """AUROC of image scores against labels (1 = anomalous), both of shape (N,)."""
    labels_np = _labels(labels, "labels")
    scores_np = _scores(scores, "scores")
    if labels_np.ndim != 1 or scores_np.shape != labels_np.shape:
        raise ValueError(
            f"labels and scores must be 1-D of one length, got shapes {labels_np.shape} and "
            f"{scores_np.shape}"
        )
    if labels_np.all() or not labels_np.any():
        return _undefined("image_auroc", "labels hold a single class (need normal and anomalous)")
    return _rank_auroc(labels_np, scores_np)


BOOTSTRAP_RESAMPLES = 2000


def auroc_interval(labels, scores, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                   seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the image AUROC over test images.

    Normal and anomalous images are resampled separately (stratified), so every resample keeps
    both classes and the class balance of the test split. Seeded: the same inputs give the same
    interval. (NaN, NaN) with an UndefinedMetricWarning when only one class is present.
    """
    labels_np = _labels(labels, "labels")
    scores_np = _scores(scores, "scores")
    if labels_np.ndim != 1 or scores_np.shape != labels_np.shape:
        raise ValueError(f"labels and scores must be 1-D of one length, got shapes "
                         f"{labels_np.shape} and {scores_np.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if labels_np.all() or not labels_np.any():
        nan = _undefined("auroc_interval", "labels hold a single class (need normal and anomalous)")
        return nan, nan
    values = _bootstrap_aurocs(labels_np, scores_np, resamples, np.random.default_rng(seed))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _bootstrap_aurocs(labels: np.ndarray, scores: np.ndarray, resamples: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The AUROC of ``resamples`` stratified resamples of (labels, scores), both classes present;
    ``scores`` (N,) gives (resamples,), ``scores`` (S, N) (S runs scoring the same images) gives
    (S, resamples), every run resampled with the same images."""
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    pos_index = rng.integers(0, n_pos, (resamples, n_pos))
    neg_index = rng.integers(0, n_neg, (resamples, n_neg))
    runs = np.atleast_2d(scores)
    values = np.stack([_resampled_aurocs(run[labels][pos_index], run[~labels][neg_index])
                       for run in runs])
    return values if scores.ndim == 2 else values[0]


def _resampled_aurocs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of each row pair: P(pos > neg) + P(pos == neg) / 2, from sorted negatives."""
    neg = np.sort(neg, axis=1)
    below = np.stack([np.searchsorted(row, p, side="left") for row, p in zip(neg, pos, strict=True)])
    upto = np.stack([np.searchsorted(row, p, side="right") for row, p in zip(neg, pos, strict=True)])
    return (below + upto).sum(axis=1) / (2.0 * pos.shape[1] * neg.shape[1])


def seeds_auroc_interval(labels, seed_scores, level: float = 0.95,
                         resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over training seeds of the image AUROC.

    ``seed_scores`` is (S, N): S models (training seeds) scoring the same N test images. Each
    resample draws the test images anew (stratified) and averages the S AUROCs on it, so the
    interval holds the test images' noise of the seed mean; the seeds' own spread is reported
    beside it. With S = 1 it is :func:`auroc_interval`."""
    labels_np = _labels(labels, "labels")
    scores_np = np.atleast_2d(np.asarray(seed_scores, dtype=float))
    if scores_np.ndim != 2 or scores_np.shape[1] != labels_np.shape[0]:
        raise ValueError(f"seed_scores must be (seeds, {labels_np.shape[0]}), got {scores_np.shape}")
    if labels_np.all() or not labels_np.any():
        nan = _undefined("seeds_auroc_interval", "labels hold a single class")
        return nan, nan
    values = _bootstrap_aurocs(labels_np, scores_np, resamples, np.random.default_rng(seed))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values.mean(axis=0), [tail, 1.0 - tail])
    return float(low), float(high)


def seeds_mean_auroc_interval(groups, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over categories and training seeds of the image
    AUROC: ``groups`` is a list of (labels (N,), scores (S, N)), one per category, the S seeds
    scoring the same images; each resample draws every category's test images anew and averages
    the S x categories AUROCs. With S = 1 it is :func:`mean_auroc_interval`."""
    return _grouped_interval([(labels, scores, None) for labels, scores in groups], level, resamples,
                             seed, "seeds_mean_auroc_interval")


def seeds_auroc_difference_interval(groups, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                                    seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of a paired difference: the mean over categories and seeds of
    the image AUROC of arm A minus that of arm B, both arms scoring the same test images.

    ``groups`` is a list of (labels (N,), scores_a (S, N), scores_b (T, N)), one per category (one
    group: that category's difference). Each resample draws every category's test images anew and
    scores both arms on the *same* images, so the noise the two share (which images happen to be
    hard) cancels; the interval is narrower than two separate intervals suggest."""
    return _grouped_interval(groups, level, resamples, seed, "seeds_auroc_difference_interval")


def _grouped_interval(groups, level: float, resamples: int, seed: int, metric: str) -> tuple[float, float]:
    """The bootstrap behind the two functions above: per group (labels, arm A, arm B or None), the
    seed-mean AUROC of A (less that of B) on each resample, both arms on the same images; then the
    mean over groups and its percentile interval. Single-class groups are left out."""
    rng = np.random.default_rng(seed)
    per_group = []
    for labels, *arms in groups:
        labels_np = _labels(labels, "labels")
        arms = [np.atleast_2d(_scores(arm, "scores")) for arm in arms if arm is not None]
        for arm in arms:
            if arm.ndim != 2 or arm.shape[1] != labels_np.shape[0]:
                raise ValueError(f"scores must be (seeds, {labels_np.shape[0]}), got {arm.shape}")
        if labels_np.all() or not labels_np.any():
            continue
        values = _bootstrap_aurocs(labels_np, np.vstack(arms), resamples, rng)  # same images
        first = values[:len(arms[0])].mean(axis=0)
        per_group.append(first - values[len(arms[0]):].mean(axis=0) if len(arms) == 2 else first)
    if not per_group:
        nan = _undefined(metric, "no category holds both classes")
        return nan, nan
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(np.mean(per_group, axis=0), [tail, 1.0 - tail])
    return float(low), float(high)


def mean_auroc_interval(groups, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over categories of the image AUROC.

    ``groups`` is a list of (labels, scores), one per category; each resample draws every
    category's test images anew (stratified, as :func:`auroc_interval`) and averages their AUROCs,
    so the interval of a mean row is as wide as its categories' noise makes it. Categories with a
    single class are left out, as the mean row leaves them out.
    """
    return seeds_mean_auroc_interval([(labels, _scores(scores, "scores")[None]) for labels, scores in groups],
                                     level, resamples, seed)


def _masks_and_maps(masks, maps, metric: str) -> tuple[np.ndarray, np.ndarray]:
    masks_np = _drop_channel(_as_numpy(masks, "masks").astype(np.float64))
    maps_np = _drop_channel(_scores(maps, "maps"))
    if masks_np.ndim != 3 or masks_np.shape != maps_np.shape:
        raise ValueError(
            f"{metric}: masks and maps must be (N, H, W) (or (N, 1, H, W)) of one shape, got "
            f"shapes {_as_numpy(masks, 'masks').shape} and {_as_numpy(maps, 'maps').shape}"
        )
    return masks_np > 0.5, maps_np


def pixel_auroc(masks, maps) -> float:
    """AUROC of every pixel's anomaly score against the ground-truth masks (N, H, W)."""
    defect, maps_np = _masks_and_maps(masks, maps, "pixel_auroc")
    defect, maps_np = defect.ravel(), maps_np.ravel()
    if defect.all() or not defect.any():
        return _undefined("pixel_auroc", "masks hold a single class (need defect and normal pixels)")
    return _rank_auroc(defect, maps_np)


def pro_curve(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-region-overlap curve: (fpr, pro), one point per distinct score, from (0, 0).

    A threshold t marks pixels with score >= t. FPR is over all normal pixels of all images; PRO is
    the mean, over every connected defect region (8-connected, per image), of the fraction of the
    region marked. Computed in one sort of all pixels. Needs both normal and defect pixels.
    """
    defect, maps_np = _masks_and_maps(masks, maps, "pro_curve")
    return _pro_curve(defect, maps_np)


def _pro_curve(defect: np.ndarray, maps_np: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pro_curve of already checked (N, H, W) defect masks (bool) and maps (float64)."""
    # Connect within each image only: the structure has no links along the image axis.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    regions, n_regions = ndimage.label(defect, structure=structure)
    n_normal = int((~defect).sum())
    if n_regions == 0 or n_normal == 0:
        raise ValueError("pro_curve needs both defect and normal pixels")
    regions, scores = regions.ravel(), maps_np.ravel()
    region_sizes = np.bincount(regions, minlength=n_regions + 1)
    # Each pixel's step in FPR (normal pixels) and in PRO (defect pixels) when it gets marked.
    fpr_step = (regions == 0) / n_normal
    pro_step = np.where(regions > 0, 1.0 / (n_regions * region_sizes[regions].clip(min=1)), 0.0)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    fpr = np.cumsum(fpr_step[order])
    pro = np.cumsum(pro_step[order])
    # Only thresholds between distinct scores: keep the last pixel of each run of tied scores.
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    fpr = np.concatenate(([0.0], fpr[last_of_tie]))
    pro = np.concatenate(([0.0], pro[last_of_tie]))
    fpr[-1] = pro[-1] = 1.0  # everything marked at the lowest threshold; drop rounding error
    return np.minimum(fpr, 1.0), np.minimum(pro, 1.0)


def aupro(masks, maps, fpr_limit: float = DEFAULT_FPR_LIMIT) -> float:
    """Area under the PRO curve up to ``fpr_limit``, divided by ``fpr_limit`` (1.0 = perfect).

    As in the MVTec AD evaluation (Bergmann et al.): the exact PRO curve of :func:`pro_curve`,
    integrated with the trapezoidal rule and linearly interpolated at ``fpr_limit``. A constant map
    gives the diagonal, i.e. fpr_limit / 2.
    """
    if not (0.0 < fpr_limit <= 1.0):
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    defect, maps_np = _masks_and_maps(masks, maps, "aupro")
    if defect.all() or not defect.any():
        return _undefined("aupro", "masks hold a single class (need defect and normal pixels)")
    fpr, pro = _pro_curve(defect, maps_np)
    inside = fpr <= fpr_limit
    x, y = fpr[inside], pro[inside]
    if x[-1] < fpr_limit:  # close the curve at the limit by interpolating the next segment
        following = np.argmax(fpr > fpr_limit)
        x0, x1, y0, y1 = fpr[following - 1], fpr[following], pro[following - 1], pro[following]
        x = np.append(x, fpr_limit)
        y = np.append(y, y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0))
    area = np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0)  # trapezoidal rule
    return float(area / fpr_limit)
