"""Patch masks for the masked autoencoder.

A mask is a boolean tensor over the patches of an image, True where the patch is hidden from the
encoder. The paper's complementary masking (Sec. 1.2, eq. 2) draws n = 1/(1 - r) views whose
*visible* parts partition the image, so every patch is reconstructed from views that never saw it.
"""

from __future__ import annotations

import torch

MASKING_MODES = ("complementary", "random")
_TOLERANCE = 1e-6


def valid_mask_ratios(max_views: int = 10) -> list[float]:
    """The ratios r = 1 - 1/n for n = 2..max_views: the ones complementary masking accepts."""
    return [1.0 - 1.0 / n for n in range(2, max_views + 1)]


def num_views(mask_ratio: float) -> int:
    """n = 1/(1 - r), the number of complementary views; ValueError unless it is an integer >= 2."""
    ratio = _as_number(mask_ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(
            f"mask_ratio must lie strictly between 0 and 1, got {ratio}; "
            f"valid ratios are 1 - 1/n: {_valid_text()}"
        )
    views = 1.0 / (1.0 - ratio)
    if abs(views - round(views)) > _TOLERANCE or round(views) < 2:
        raise ValueError(
            f"mask_ratio={ratio} gives 1/(1 - r) = {views:.4g} views, not a whole number >= 2; "
            f"valid ratios are 1 - 1/n: {_valid_text()}"
        )
    return int(round(views))


def check(mode: str, mask_ratio: float, num_patches: int | None = None, setting: str = "masking") -> int:
    """Validate a masking mode with its mask ratio (and, given ``num_patches``, that every view
    keeps a visible patch); return the views per image. ValueError naming ``setting`` (the
    configuration key holding ``mode``), the allowed modes or the valid ratios."""
    if mode not in MASKING_MODES:
        raise ValueError(f"{setting} {mode!r} is not one of: {', '.join(MASKING_MODES)}")
    if mode == "complementary":
        views = num_views(mask_ratio)  # names the valid ratios
    else:
        ratio = _as_number(mask_ratio)
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1) for random masking, got {mask_ratio!r}")
        views = 1
    if num_patches is not None and views > num_patches:
        raise ValueError(
            f"mask_ratio {mask_ratio} gives {views} views but {setting}={mode} has only "
            f"{num_patches} patches, (image_size / patch_size)^2 (each view needs one visible patch)"
        )
    return views


def views_per_image(mode: str, mask_ratio: float) -> int:
    """The masked views of one image a mode draws: n = 1/(1 - r) for complementary, 1 for random
    (ValueError as :func:`check` for a bad mode or ratio)."""
    return check(mode, mask_ratio)


def _as_number(mask_ratio) -> float:
    try:
        return float(mask_ratio)
    except (TypeError, ValueError):
        raise ValueError(f"mask_ratio must be a number, got {mask_ratio!r}") from None


def _valid_text() -> str:
    return ", ".join(f"{r:.4g}" for r in valid_mask_ratios()) + ", ..."


def complementary_masks(
    num_patches: int, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.BoolTensor:
    """n masks of shape (n, num_patches), True = masked, whose visible parts partition the patches.

    A random permutation deals the patches to the views in turn, so each patch is visible in exactly
    one view and masked in the other n - 1; when n does not divide num_patches the visible counts
    differ by at most one.
    """
    n = num_views(mask_ratio)
    _check_num_patches(num_patches, n)
    order = torch.randperm(num_patches, generator=generator)
    owner = torch.empty(num_patches, dtype=torch.long)
    owner[order] = torch.arange(num_patches) % n  # the view in which each patch is visible
    return owner.unsqueeze(0) != torch.arange(n).unsqueeze(1)


def random_masks(
    num_patches: int, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.BoolTensor:
    """The vanilla MAE mask, shape (1, num_patches): round(r * num_patches) random patches masked."""
    ratio = float(mask_ratio)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio!r}")
    _check_num_patches(num_patches, 1)
    num_masked = round(ratio * num_patches)
    num_masked = min(num_masked, num_patches - 1)  # the encoder needs at least one visible patch
    masks = torch.zeros(1, num_patches, dtype=torch.bool)
    masks[0, torch.randperm(num_patches, generator=generator)[:num_masked]] = True
    return masks


def make_masks(
    masking: str, num_patches: int, mask_ratio: float, generator: torch.Generator | None = None
) -> torch.BoolTensor:
    """Dispatch on the masking mode: "complementary" (the paper) or "random" (vanilla MAE)."""
    if masking not in MASKING_MODES:
        raise ValueError(f"masking {masking!r} is not one of: {', '.join(MASKING_MODES)}")
    if masking == "complementary":
        return complementary_masks(num_patches, mask_ratio, generator)
    return random_masks(num_patches, mask_ratio, generator)


def _check_num_patches(num_patches: int, views: int) -> None:
    if int(num_patches) != num_patches or num_patches < max(views, 1):
        raise ValueError(
            f"num_patches must be a whole number >= {max(views, 1)} (one visible patch per view), "
            f"got {num_patches!r}"
        )
