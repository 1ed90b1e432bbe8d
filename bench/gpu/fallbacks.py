"""What the run uses where a package of the study is missing on a bare GPU box, each checked equal
to the study's own code by ``tests/test_gpu_script.py``:

- ``SSIMLoss``: λ1 (1 - SSIM) + λ2 L1 of eq. 4 without pytorch-msssim: the same Gaussian window
  (sigma 1.5, side from ``scoring.ssim_window_size``), filtered without padding as pytorch-msssim
  filters, in torch only. LPIPS is left out (its AlexNet weights are not on such a box).
- ``image_auroc``, ``auroc_interval``, ``pixel_auroc``: ``maskad_core.metrics`` without scipy and
  scikit-learn: the Mann-Whitney AUROC (ties half) and the same stratified bootstrap, drawing the
  same resamples from the same seed.
- ``derive_seed``: ``maskad_core.training.runtime.derive_seed`` (whose module needs PyYAML).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskad_core.scoring import SSIM_SIGMA, gaussian_kernel_1d, ssim_window_size


def derive_seed(*parts) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def ssim_valid(x: Tensor, y: Tensor) -> Tensor:
    """Mean SSIM of (B, C, H, W) images in [0, 1] over the window positions that fit (no padding)."""
    window = ssim_window_size(x.shape[-2], x.shape[-1])
    kernel = gaussian_kernel_1d(SSIM_SIGMA, window // 2, dtype=x.dtype, device=x.device)
    channels = x.shape[1]
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, vertical, groups=channels), horizontal, groups=channels)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)) * (
        (2 * cov + c2) / (var_x + var_y + c2))
    return ssim_map.flatten(2).mean(-1).mean()


class SSIMLoss(nn.Module):
    """``ReconstructionLoss(lpips="off")`` in torch only: same call and the same components."""

    lpips_active = False

    def __init__(self, ssim_weight: float, l1_weight: float, reason: str = ""):
        super().__init__()
        self.ssim_weight, self.l1_weight = float(ssim_weight), float(l1_weight)
        self.lpips_reason = reason

    def forward(self, recon: Tensor, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        ssim_loss = 1.0 - ssim_valid(recon, target)
        l1_loss = (recon - target).abs().mean()
        total = self.ssim_weight * ssim_loss + self.l1_weight * l1_loss
        zero = torch.zeros((), device=recon.device)
        return total, {"ssim": ssim_loss.detach(), "l1": l1_loss.detach(), "lpips": zero,
                       "total": total.detach()}


# ------------------------------------------------------------------ metrics without scipy/sklearn
def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank (scipy.stats.rankdata's default)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def _rank_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u_statistic = _average_ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (float(n_pos) * float(n_neg)))


def image_auroc(labels, scores) -> float:
    return _rank_auroc(np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64))


def pixel_auroc(masks, maps) -> float:
    return _rank_auroc(np.asarray(masks).astype(bool).ravel(),
                       np.asarray(maps, dtype=np.float64).ravel())


def auroc_interval(labels, scores, level: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> tuple[float, float]:
    """Stratified percentile bootstrap of the image AUROC, resampled as metrics.auroc_interval."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    pos = scores[labels][rng.integers(0, n_pos, (resamples, n_pos))]
    neg = np.sort(scores[~labels][rng.integers(0, n_neg, (resamples, n_neg))], axis=1)
    below = np.stack([np.searchsorted(row, p, side="left") for row, p in zip(neg, pos, strict=True)])
    upto = np.stack([np.searchsorted(row, p, side="right") for row, p in zip(neg, pos, strict=True)])
    values = (below + upto).sum(axis=1) / (2.0 * n_pos * n_neg)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
