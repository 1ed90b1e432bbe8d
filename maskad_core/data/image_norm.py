"""Per-image standardisation: the study's control for global brightness and contrast.

On MVTec AD screw the mean grey level of an image alone separates the test split (image AUROC 1.000
for the "brightness" probe of ``maskad_core.evaluation.detectors``): a confound, which any detector may exploit
instead of the defects. The control standardises each image, per channel, by its own mean and
standard deviation over pixels, so no image differs from another in global brightness or contrast;
a detector (or the masked autoencoder) trained and scored on standardised images can only use what
is left: the structure. After it, the "brightness" and "contrast" probes see identical statistics.

The standardised value z is mapped back by a fixed, image-independent affine map,
``CENTER + SCALE * z`` (0.5 + 0.15 z), so that models and detectors written for [0, 1] inputs can
consume it: the image mean sits at 0.5 and +-3.3 standard deviations span [0, 1]. Values beyond
that (bright or dark outliers: often the defects themselves) are kept, outside [0, 1], unless
``clamp=True`` cuts them to [0, 1]. Either way the result is invariant to a per-image, per-channel
change of intensity a x + b (a > 0), up to float rounding, as long as a times the image's std stays
above ``eps``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

CENTER = 0.5
SCALE = 0.15
# Floor of an image's std, in [0, 1] intensity units (a quarter of a grey level of 255): a constant
# image (std 0) maps to CENTER everywhere instead of dividing by zero; a nearly constant one has its
# variations scaled by 1 / DEFAULT_EPS at most.
DEFAULT_EPS = 1e-3


def standardize_images(images: Tensor, eps: float = DEFAULT_EPS, *, clamp: bool = False) -> Tensor:
    """(..., C, H, W) images -> float32 images of the same shape, each channel of each image
    standardised by its own mean and std over pixels (std floored at ``eps``), then mapped to
    ``CENTER + SCALE * z``; cut to [0, 1] only when ``clamp``. Finite for constant images."""
    if not isinstance(images, Tensor) or images.ndim < 3 or images.numel() == 0:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty (..., C, H, W) tensor, got {shape}")
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    images = images.float()
    if not torch.isfinite(images).all():
        raise ValueError("images hold NaN or infinite values")
    std, mean = torch.std_mean(images, dim=(-2, -1), keepdim=True, correction=0)
    standardized = CENTER + SCALE * (images - mean) / std.clamp_min(eps)
    return standardized.clamp_(0.0, 1.0) if clamp else standardized


# The control as a setting (TrainConfig.image_standardization): "none" leaves images as they are,
# "per_image" standardises each one before the model or a detector sees it, cut to [0, 1] so that
# the model's [0, 1] reconstructions and the SSIM of the loss keep their range.
IMAGE_STANDARDIZATIONS = ("none", "per_image")


def check_standardization(kind: str) -> str:
    if kind not in IMAGE_STANDARDIZATIONS:
        raise ValueError(f"image_standardization must be one of: {', '.join(IMAGE_STANDARDIZATIONS)}; "
                         f"got {kind!r}")
    return kind


def apply_standardization(images: Tensor, kind: str) -> Tensor:
    """``images`` under the setting ``kind`` (see IMAGE_STANDARDIZATIONS)."""
    if check_standardization(kind) == "none":
        return images
    return standardize_images(images, clamp=True)
