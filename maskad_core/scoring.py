"""Anomaly maps and image scores from an image and its reconstruction.

The paper's score (eq. 1) is the mean over pixels of the squared error: ``anomaly_map(kind="l2")``
followed by ``image_score(reduction="mean")``. The other kinds and reductions are the variants the
study compares: "l1" and "ssim" maps, optional Gaussian smoothing, and the ``max`` or mean of the
top-k% pixels of the map, and ``MapStatistics``: each pixel of a map as a z-score against the maps
of normal images at that pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

ANOMALY_MAP_KINDS = ("l2", "l2_centered", "l1", "ssim")
REDUCTIONS = ("mean", "max", "topk")
SMOOTHING_TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage.gaussian_filter
SSIM_SIGMA = 1.5  # the SSIM window of the loss (eq. 4) and of the ssim map alike
SSIM_MAX_WINDOW = 11


def ssim_window_size(height: int, width: int) -> int:
    """SSIM window side for an image of ``height`` x ``width``: 11, or the largest odd size that fits.

    pytorch-msssim filters without padding, so the window may not exceed the smaller side. Raises
    ValueError for images smaller than 3 x 3, where SSIM has no structure term to speak of.
    """
    side = min(int(height), int(width))
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    window = min(SSIM_MAX_WINDOW, side)
    return window if window % 2 == 1 else window - 1


def gaussian_kernel_1d(sigma: float, radius: int, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian weights at offsets -radius..radius."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype=dtype, device=device)


def _mirror_indices(size: int, radius: int, device=None) -> Tensor:
    """Indices of a length-``size`` axis padded by ``radius`` on both sides, mirrored about the
    edge pixels (d c b | a b c d | c b a) and repeated as often as needed for any radius."""
    positions = torch.arange(-radius, size + radius, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions.remainder(period)
    return torch.where(folded > size - 1, period - folded, folded)


def _separable_filter(images: Tensor, kernel: Tensor) -> Tensor:
    """Filter each channel of (B, C, H, W) with ``kernel`` along H then W, mirror-padded ("same")."""
    channels, height, width = images.shape[1:]
    radius = kernel.numel() // 2
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    out = images.index_select(2, _mirror_indices(height, radius, images.device))
    out = F.conv2d(out, vertical, groups=channels)
    out = out.index_select(3, _mirror_indices(width, radius, images.device))
    return F.conv2d(out, horizontal, groups=channels)


def gaussian_smooth(maps: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of (B, H, W) maps with standard deviation ``sigma`` pixels (0 = unchanged).

    Equal to ``scipy.ndimage.gaussian_filter(map, sigma, mode="mirror", truncate=4.0)`` for each
    map: the kernel reaches 4 sigma and the map is mirrored about its edge pixels, as often as
    needed when the kernel is wider than the map.
    """
    if not (sigma >= 0.0 and math.isfinite(sigma)):
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {sigma!r}")
    radius = int(SMOOTHING_TRUNCATE * sigma + 0.5)
    if radius < 1:  # sigma < 0.125: the kernel is a single tap
        return maps
    kernel = gaussian_kernel_1d(sigma, radius, dtype=maps.dtype, device=maps.device)
    return _separable_filter(maps.unsqueeze(1), kernel).squeeze(1)


def ssim_map(images: Tensor, recon: Tensor) -> Tensor:
    """Per-pixel SSIM of (B, C, H, W) images in [0, 1] -> (B, C, H, W).

    Same constants and Gaussian window as the loss (sigma 1.5, side from ``ssim_window_size``),
    mirror-padded so that the map keeps the image size; away from the border it equals
    skimage's ``structural_similarity(..., gaussian_weights=True, full=True)`` map.
    """
    window = ssim_window_size(images.shape[-2], images.shape[-1])
    kernel = gaussian_kernel_1d(SSIM_SIGMA, window // 2, dtype=images.dtype, device=images.device)
    c1, c2 = 0.01**2, 0.03**2  # (K * data_range)^2 with data_range 1
    mu_x = _separable_filter(images, kernel)
    mu_y = _separable_filter(recon, kernel)
    var_x = _separable_filter(images * images, kernel) - mu_x**2
    var_y = _separable_filter(recon * recon, kernel) - mu_y**2
    cov = _separable_filter(images * recon, kernel) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def anomaly_map(images: Tensor, recon: Tensor, kind: str = "l2", smooth_sigma: float = 0.0) -> Tensor:
    """Per-pixel anomaly map (B, H, W) of images and reconstructions (B, C, H, W), both in [0, 1].

    kind "l2": squared error averaged over channels (the per-pixel term of eq. 1); "l2_centered":
    the same after removing each image's per-channel mean difference, so that a global brightness
    offset between image and reconstruction costs nothing; "l1": absolute error averaged over channels; "ssim": 1 - SSIM map averaged over channels. ``smooth_sigma`` > 0
    blurs the map with a Gaussian of that many pixels (see ``gaussian_smooth``).
    """
    if kind not in ANOMALY_MAP_KINDS:
        raise ValueError(f"kind must be one of {ANOMALY_MAP_KINDS}, got {kind!r}")
    if images.shape != recon.shape or images.ndim != 4:
        raise ValueError(
            f"images and recon must both be (B, C, H, W) of one shape, got "
            f"{tuple(images.shape)} and {tuple(recon.shape)}"
        )
    if kind == "l2":
        maps = (images - recon).pow(2).mean(dim=1)
    elif kind == "l2_centered":
        difference = images - recon
        difference = difference - difference.mean(dim=(2, 3), keepdim=True)
        maps = difference.pow(2).mean(dim=1)
    elif kind == "l1":
        maps = (images - recon).abs().mean(dim=1)
    else:
        maps = 1.0 - ssim_map(images, recon).mean(dim=1)
    return gaussian_smooth(maps, float(smooth_sigma))


def eq1_score(images: Tensor, recon: Tensor) -> Tensor:
    """The paper's eq. 1: mean squared error over pixels (and channels), one score per image."""
    return image_score(anomaly_map(images, recon, kind="l2"), reduction="mean")


def image_score(maps: Tensor, reduction: str = "mean", topk_fraction: float = 0.01,
                valid: Tensor | None = None) -> Tensor:
    """One score per map: (B, H, W) -> (B,).

    "mean": mean over pixels (eq. 1 for an l2 map); "max": largest pixel (usually of a smoothed map);
    "topk": mean of the ceil(topk_fraction * H * W) largest pixels (at least one). ``valid``, a
    (B, H, W) boolean tensor, keeps the reduction to the pixels it marks (the image under
    non_square=pad, not its padding); k then counts the valid pixels.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(maps.shape)}")
    if reduction == "topk" and not (0.0 < topk_fraction <= 1.0):
        raise ValueError(f"topk_fraction must be in (0, 1], got {topk_fraction!r}")
    if valid is not None:
        if valid.shape != maps.shape:
            raise ValueError(f"valid must be shaped as the maps {tuple(maps.shape)}, got {tuple(valid.shape)}")
        return torch.stack([_reduce(m[v.bool()], reduction, topk_fraction) for m, v in zip(maps, valid, strict=True)])
    flat = maps.flatten(start_dim=1)
    if reduction == "mean":
        return flat.mean(dim=1)
    if reduction == "max":
        return flat.max(dim=1).values
    k = max(1, math.ceil(topk_fraction * flat.shape[1] - 1e-9))  # 0.1 * 30 is 3, not 4
    return flat.topk(k, dim=1).values.mean(dim=1)


def _reduce(pixels: Tensor, reduction: str, topk_fraction: float) -> Tensor:
    """One map's valid pixels (1-D) reduced as image_score reduces a whole map."""
    if reduction == "mean":
        return pixels.mean()
    if reduction == "max":
        return pixels.max()
    k = max(1, math.ceil(topk_fraction * pixels.numel() - 1e-9))
    return pixels.topk(k).values.mean()


# How a map is standardised before it is reduced: "none" (as it is) or "per_pixel" (MapStatistics).
MAP_STANDARDIZATIONS = ("none", "per_pixel")


def standardizes(standardization: str) -> bool:
    """Whether maps under this standardisation need MapStatistics (ValueError if unknown)."""
    if standardization not in MAP_STANDARDIZATIONS:
        raise ValueError(f"map_standardization {standardization!r} is not one of: "
                         f"{', '.join(MAP_STANDARDIZATIONS)}")
    return standardization == "per_pixel"


# The std floor of MapStatistics, as a fraction of the category's mean per-pixel std: a pixel whose
# training maps barely vary must not turn a tiny error into a huge z-score. Measured on the tuning
# data (`python -m bench.records.recipe --std-floor norm-ssim-0.1`, bench/results/recipe/gen-val-std-floor.jsonl):
# fractions from 0 to 0.3 score alike, larger ones lower.
STD_FLOOR_FRACTION = 0.1


class MapStatistics:
    """Per-category, per-pixel mean and std of the anomaly maps of normal images.

    ``standardize`` turns a map into (map - mean) / (std + floor) at each pixel, the floor being
    STD_FLOOR_FRACTION of the category's mean std: where a model always errs (an edge it blurs, a
    texture it cannot predict) the map is discounted, and where it is normally exact any error
    stands out. The statistics come from maps made exactly as the test maps (same kind, smoothing).
    """

    def __init__(self, mean: dict[str, Tensor], std: dict[str, Tensor]):
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, maps: Tensor, categories) -> MapStatistics:
        """From (N, H, W) maps of normal images and their N category names (at least one each)."""
        if maps.ndim != 3 or maps.shape[0] != len(categories):
            raise ValueError(f"maps must be (N, H, W) with one category per map, got shape "
                             f"{tuple(maps.shape)} and {len(categories)} categories")
        mean, std = {}, {}
        for category in dict.fromkeys(categories):
            chosen = maps[torch.tensor([c == category for c in categories])]
            mean[category] = chosen.mean(dim=0)
            spread = chosen.std(dim=0, correction=0)
            std[category] = spread + STD_FLOOR_FRACTION * spread.mean() + 1e-12
        return cls(mean, std)

    @property
    def categories(self) -> list[str]:
        return sorted(self.mean)

    def state(self) -> dict:
        """Plain tensors and names, for ``torch.save`` (loadable with weights_only=True)."""
        return {"categories": self.categories,
                "mean": torch.stack([self.mean[c] for c in self.categories]),
                "std": torch.stack([self.std[c] for c in self.categories])}

    @classmethod
    def from_state(cls, state: dict) -> MapStatistics:
        names = list(state["categories"])
        return cls(dict(zip(names, state["mean"], strict=True)),
                   dict(zip(names, state["std"], strict=True)))

    def standardize(self, maps: Tensor, categories) -> Tensor:
        """(B, H, W) maps of images of these B categories, each as per-pixel z-scores."""
        unknown = sorted(set(categories) - set(self.mean))
        if unknown:
            raise ValueError(f"no map statistics for categories {unknown}; fitted on "
                             f"{sorted(self.mean)}")
        if maps.ndim != 3 or maps.shape[1:] != next(iter(self.mean.values())).shape:
            raise ValueError(f"maps must be (B, H, W) of the fitted size "
                             f"{tuple(next(iter(self.mean.values())).shape)}, got {tuple(maps.shape)}")
        mean = torch.stack([self.mean[c] for c in categories]).to(maps)
        std = torch.stack([self.std[c] for c in categories]).to(maps)
        return (maps - mean) / std
