"""The recipe's augmentation and masks, drawn for a whole batch on the device.

``MVTecAD._augment`` crops (a random square of 85-100% of the area, resized back), rotates (up to
±10°, the corners filled with the image's mean colour) and flips (left-right and up-down, each with
probability 0.5) one image at a time on the CPU. Here the same three draws per image are one affine
map per image and one bilinear ``grid_sample`` for the batch: one resampling instead of two, so the
pixels differ slightly from the loader's (the distribution of crops, angles and flips is the same).

``complementary_masks_batch`` deals a random permutation of the patches to the n views in turn, as
``maskad_core.masking.complementary_masks`` does, for B images at once on the device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def complementary_masks_batch(batch: int, num_patches: int, views: int, generator: torch.Generator,
                              device) -> Tensor:
    """(B, n, L) bool, True = masked; each patch visible in exactly one of its image's n views."""
    order = torch.rand(batch, num_patches, generator=generator, device=device).argsort(dim=1)
    owner = torch.empty(batch, num_patches, dtype=torch.long, device=device)
    dealt = (torch.arange(num_patches, device=device) % views).expand(batch, -1)
    owner.scatter_(1, order, dealt)
    return owner.unsqueeze(1) != torch.arange(views, device=device).view(1, -1, 1)


def random_masks_batch(batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator,
                       device) -> Tensor:
    """(B, 1, L): round(r * L) random patches masked per image (at least one visible), as
    ``maskad_core.masking.random_masks``."""
    hidden = min(round(mask_ratio * num_patches), num_patches - 1)
    rank = torch.rand(batch, num_patches, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    return (rank < hidden).unsqueeze(1)


def augment_batch(images: Tensor, generator: torch.Generator, crop_scale=(0.85, 1.0),
                  rotate_degrees: float = 10.0, flip_probability: float = 0.5) -> Tensor:
    """(B, C, S, S) images in [0, 1] -> the same batch cropped, rotated and flipped, each image
    with its own draws from ``generator`` (on the images' device)."""
    b, _, size, _ = images.shape
    device, dtype = images.device, images.dtype

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(b, generator=generator, device=device, dtype=dtype)

    side = torch.round(size * uniform(*crop_scale).sqrt()).clamp(1, size)  # crop side in pixels
    top = torch.floor(torch.rand(b, generator=generator, device=device, dtype=dtype) * (size - side + 1))
    left = torch.floor(torch.rand(b, generator=generator, device=device, dtype=dtype) * (size - side + 1))
    angle = uniform(-rotate_degrees, rotate_degrees) * (math.pi / 180.0)
    flips = torch.rand(b, 2, generator=generator, device=device, dtype=dtype) < flip_probability
    sign = torch.where(flips, -1.0, 1.0).to(dtype)  # (B, 2): x (left-right), y (up-down)

    # output pixel centres in [-1, 1] (align_corners=False), as (x, y)
    axis = (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    u = torch.stack([xs, ys], dim=-1).unsqueeze(0) * sign.view(b, 1, 1, 2)  # flip last
    cos, sin = angle.cos().view(b, 1, 1), angle.sin().view(b, 1, 1)
    rotated = torch.stack([cos * u[..., 0] - sin * u[..., 1], sin * u[..., 0] + cos * u[..., 1]], -1)
    scale = (side / size).view(b, 1, 1, 1)
    centre = torch.stack([(left + side / 2) * 2 / size - 1, (top + side / 2) * 2 / size - 1], -1)
    grid = centre.view(b, 1, 1, 2) + scale * rotated
    out = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                                          align_corners=False)
    inside = (rotated.abs() <= 1).all(dim=-1).unsqueeze(1).to(dtype)  # (B, 1, S, S) in the crop
    fill = (out * inside).sum(dim=(2, 3), keepdim=True) / inside.sum(dim=(2, 3), keepdim=True).clamp(min=1)
    return torch.where(inside > 0, out, fill).clamp_(0.0, 1.0)
