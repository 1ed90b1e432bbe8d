"""How an image of any shape becomes the model's size x size square, and its mask with it.

Two rules for an image that is not square (``NON_SQUARE_RULES``; ``TrainConfig.non_square``):

``squash`` (the default)
    resize to size x size, ignoring the aspect ratio (each axis scaled on its own).
``pad``
    resize the longer side to ``size`` keeping the aspect ratio (the shorter side rounded to whole
    pixels), centre it, and fill the rest with one constant: the resized image's mean colour (per
    channel, rounded), the colour the rotation augmentation fills its corners with. Not the edge
    replicated: a defect that touches the border would be smeared into the padding, where its mask
    is 0. The mask's padding is 0 (normal).

A square image is resized exactly as before either rule existed (bit-identical under both). Its
mask follows the image exactly: the same placement computed from the *image's* size, so a mask
stored at another resolution still lands on its image. Masks are thresholded at 127, shrunk by area
with any coverage marking a pixel defective (a defect smaller than an output pixel never vanishes)
and enlarged by nearest neighbour. The measurement behind the default is ``bench/records/resize_rule.py``
(``bench/results/resize_rule.md``); the decision is in ``recipe_log.yaml`` (``data_decisions``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

NON_SQUARE_RULES = ("squash", "pad")


@dataclass(frozen=True)
class Placement:
    """Where a resized image lies on the size x size canvas: ``width`` x ``height`` pixels at
    column ``left``, row ``top``; the rest is padding."""

    width: int
    height: int
    left: int
    top: int
    size: int

    @property
    def padded(self) -> bool:
        return (self.width, self.height) != (self.size, self.size)

    @property
    def padding_fraction(self) -> float:
        """Share of the canvas that is padding (0 for ``squash`` and for square images)."""
        return 1.0 - self.width * self.height / self.size ** 2


def valid_pixels(place: Placement) -> torch.Tensor:
    """(size, size) boolean: True where the image lies, False on the padding."""
    valid = torch.zeros(place.size, place.size, dtype=torch.bool)
    valid[place.top:place.top + place.height, place.left:place.left + place.width] = True
    return valid


def check_rule(rule: str) -> str:
    """``rule`` when it is one of NON_SQUARE_RULES; otherwise ValueError naming them."""
    if rule not in NON_SQUARE_RULES:
        raise ValueError(f"non_square must be one of: {', '.join(NON_SQUARE_RULES)}; got {rule!r}")
    return rule


def placement(image_size: tuple[int, int], size: int, rule: str = "squash") -> Placement:
    """The placement of an image of ``image_size`` = (width, height) pixels under ``rule``."""
    check_rule(rule)
    width, height = image_size
    if rule == "squash" or width == height:
        return Placement(size, size, 0, 0, size)
    longer = max(width, height)
    new_w = max(1, int(width * size / longer + 0.5))
    new_h = max(1, int(height * size / longer + 0.5))
    return Placement(new_w, new_h, (size - new_w) // 2, (size - new_h) // 2, size)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; grayscale is repeated to 3 channels, alpha dropped. Deep modes are
    scaled by the depth the file declares, never by an image's own values (two frames differing in
    one pixel stay alike): 16- and 32-bit integers ("I;16*", "I") by 65535, floats ("F") as [0, 1];
    values beyond are cut."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" else 65535.0
        arr = np.nan_to_num(arr, nan=0.0, posinf=top, neginf=0.0)
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def resize_image(img: Image.Image, size: int, rule: str = "squash") -> torch.Tensor:
    """Antialiased (Lanczos) resize onto a size x size canvas under ``rule``; uint8 (3, H, W)."""
    img = to_rgb(img)
    place = placement(img.size, size, rule)
    if img.size != (place.width, place.height):
        img = img.resize((place.width, place.height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if place.padded:
        fill = np.asarray(img, dtype=np.float64).reshape(-1, 3).mean(axis=0)
        canvas = Image.new("RGB", (size, size), tuple(int(v + 0.5) for v in fill))
        canvas.paste(img, (place.left, place.top))
        img = canvas
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def binary_mask(mask: Image.Image) -> Image.Image:
    """A mask of any mode as an "L" image of 0 and 255 (thresholded at 127; deep modes at 0)."""
    if mask.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # a deep mask's depth says nothing of its levels (0/1, 0/255, 0/65535): any nonzero is defective
        return Image.fromarray(np.where(np.asarray(mask, dtype=np.float64) > 0, 255, 0).astype(np.uint8), "L")
    if mask.mode not in ("L", "1"):
        mask = to_rgb(mask).convert("L")
    return mask.convert("L").point(lambda v: 255 if v > 127 else 0)


def _scale_mask(mask: Image.Image, target: tuple[int, int]) -> Image.Image:
    """A 0/255 mask at ``target`` = (width, height): any coverage where an axis shrinks, nearest
    where it grows; an axis that shrinks while the other grows is scaled on its own first."""
    (width, height), (new_w, new_h) = mask.size, target
    if mask.size == target:
        return mask
    if (new_w < width) != (new_h < height) and new_w != width and new_h != height:
        wide = mask.resize((new_w, height), _mask_filter(new_w < width))
        mask = wide.point(lambda v: 255 if v > 0 else 0)
        return mask.resize(target, _mask_filter(new_h < height))
    return mask.resize(target, _mask_filter(new_w < width or new_h < height))


def _mask_filter(shrinking: bool) -> Image.Resampling:
    return Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST


def resize_mask(mask: Image.Image, size: int, rule: str = "squash",
                image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize a 0/255 mask the way its image is resized: returns uint8 0/1 (1, size, size).

    ``image_size`` is the (width, height) of the mask's image (default: the mask's own): the
    placement is the image's. Shrinking averages each output pixel's area (box filter) and marks it
    defective if any of it was; enlarging is nearest-neighbour; padding is 0.
    """
    mask = binary_mask(mask)
    place = placement(image_size or mask.size, size, rule)
    inner = (np.asarray(_scale_mask(mask, (place.width, place.height))) > 0).astype(np.uint8)
    if not place.padded:
        return torch.from_numpy(inner)[None]
    out = np.zeros((size, size), dtype=np.uint8)
    out[place.top:place.top + place.height, place.left:place.left + place.width] = inner
    return torch.from_numpy(out)[None]
