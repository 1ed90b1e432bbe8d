"""The MVTec AD loader: one torch Dataset over MVTec AD's folder layout.

Layout read (the original download, the 256 px copy in ../shared and the synthetic set alike)::

    root/<category>/train/good/*.png
    root/<category>/test/<defect_type>/*.png          (defect_type "good" = normal)
    root/<category>/ground_truth/<defect_type>/<name>_mask.png   (optional)

A category without ``ground_truth/`` (screw in ../shared) still has image labels; its items carry
``has_mask=False`` so that pixel metrics can be reported as undefined for it.

Several data sets under one root: a folder of the root that is not a category itself but holds
category folders (a *collection*, such as MVTec AD's own folder) contributes its categories under
their own names. ../shared/data holds the category ``kolektor_sdd`` and the collection ``mvtec_ad``
(bottle, screw), so one configuration names all three with::

    data_root: ../shared/data
    categories: [bottle, kolektor_sdd, screw]      # or None: every category found

One level of collections is read; two categories of one name under one root are an error.

Images that are not square (KolektorSDD's are 256 px wide and about 640 px high) are fitted to the
square by the ``non_square`` rule of :mod:`maskad_core.data.geometry` ("squash", the default, or "pad");
square images are unchanged by either.
"""

from __future__ import annotations

import difflib
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from maskad_core.data.geometry import NON_SQUARE_RULES, resize_image, resize_mask
from maskad_core.data.image_norm import apply_standardization, check_standardization

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
AUGMENTATIONS = ("crop", "rotate", "flip")
SPLITS = ("train", "test")
GOOD = "good"
# Files that image tools and file browsers leave behind; never samples.
_STRAY_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
_DECODE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError,
                  Image.DecompressionBombError, EOFError)


class DataError(ValueError):
    """Bad input to the data layer: missing or empty category, unreadable file, bad parameter."""


class DataWarning(UserWarning):
    """Something in the data was repaired or skipped (mask resized, corrupt file skipped)."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    category: str
    defect_type: str
    mask_path: Path | None
    has_mask: bool


def _is_sample_file(path: Path) -> bool:
    name = path.name
    return (path.is_file() and not name.startswith(".") and name.lower() not in _STRAY_NAMES
            and path.suffix.lower() in IMAGE_EXTENSIONS and not path.stem.endswith("_mask"))


def _visible_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data root {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder")
    return root


def _is_category(folder: Path) -> bool:
    return (folder / "train").is_dir() or (folder / "test").is_dir()


def category_folders(root: str | Path) -> dict[str, Path]:
    """{name: folder} of the categories under ``root``, sorted by name: its folders holding
    ``train/`` or ``test/``, and those of its collections (folders of categories, one level down).
    Two categories of one name are a DataError naming both folders."""
    root = _check_root(root)
    found: dict[str, Path] = {}
    for child in _visible_dirs(root):
        members = [child] if _is_category(child) else [p for p in _visible_dirs(child)
                                                         if _is_category(p)]
        for folder in members:
            if folder.name in found:
                raise DataError(f"two categories named {folder.name!r} under {root}: "
                                f"{found[folder.name]} and {folder}; point the data root at one "
                                f"of their parents")
            found[folder.name] = folder
    return dict(sorted(found.items()))


def available_categories(root: str | Path) -> list[str]:
    """Names of the categories under ``root`` (see :func:`category_folders`)."""
    return list(category_folders(root))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_sample_file(p)) if folder.is_dir() else []


def _find_mask(gt_dir: Path, image: Path) -> Path | None:
    for ext in (".png", *sorted(IMAGE_EXTENSIONS - {".png"})):
        candidate = gt_dir / f"{image.stem}_mask{ext}"
        if candidate.is_file():
            return candidate
    return None


def _parse_augment(augment) -> frozenset[str]:
    if augment is False or augment is None:
        return frozenset()
    if augment is True:
        return frozenset(AUGMENTATIONS)
    if isinstance(augment, str):
        augment = [a for a in augment.replace(",", " ").split() if a]
    try:
        chosen = frozenset(augment)
    except TypeError:
        raise DataError(f"augment must be True, False or a subset of {AUGMENTATIONS}; "
                        f"got {augment!r}") from None
    unknown = sorted(chosen - set(AUGMENTATIONS))
    if unknown:
        raise DataError(f"unknown augmentation(s) {unknown}; choose from {AUGMENTATIONS}")
    return chosen


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except _DECODE_ERRORS as err:
        raise DataError(f"cannot read image {path}: {err.__class__.__name__}: {err}") from err
    return img


def _check_non_square(rule: str) -> str:
    if rule not in NON_SQUARE_RULES:
        raise DataError(f"non_square must be one of: {', '.join(NON_SQUARE_RULES)}; got {rule!r}")
    return rule


def read_image(path: str | Path, image_size: int, non_square: str = "squash",
               image_standardization: str = "none") -> torch.Tensor:
    """One image file as MVTecAD reads it: RGB, antialiased resize under the ``non_square`` rule
    (geometry.NON_SQUARE_RULES), float (3, H, W) in [0, 1], under ``image_standardization``
    (image_norm.IMAGE_STANDARDIZATIONS). Unreadable files raise DataError naming the file."""
    rule = _check_non_square(non_square)
    check_standardization(image_standardization)
    image = resize_image(_open(Path(path)), int(image_size), rule).float().div_(255.0)
    return apply_standardization(image, image_standardization)


class MVTecAD(Dataset):
    """MVTec AD (or anything in its layout) as one multi-class torch Dataset.

    Parameters
    ----------
    root: folder holding the category folders (or collections of them: see the module's doc).
    categories: None (every category found), a name, or a list of names.
    split: "train" (normal images only) or "test" (normal and defective).
    image_size: side of the square images returned.
    non_square: how an image that is not square becomes one, "squash" or "pad"
        (geometry.NON_SQUARE_RULES); masks follow their images. Square images: no difference.
    image_standardization: "per_image" standardises each returned image (image_norm, the
        study's control for global brightness and contrast), after any augmentation.
    augment: False, True (crop, rotate, flip) or a subset of ("crop", "rotate", "flip").
        Applies to the train split only; ignored for "test" (``self.augmentations`` is then empty).
        Random numbers come from torch's global generator, so seeded DataLoader workers reproduce.
    skip_corrupt: decode every file up front and skip unreadable ones (listed in ``self.skipped``,
        one warning summarising) instead of raising DataError when the file is first read.
    cache: keep decoded, resized images (uint8): True decodes all first, "lazy" each on first read.
    crop_scale, rotate_degrees, flip_probability: strength of the augmentations.
    """

    def __init__(self, root: str | Path, categories=None, split: str = "train", image_size: int = 224,
                 augment=False, skip_corrupt: bool = False, cache: bool | str = False,
                 crop_scale: tuple[float, float] = (0.85, 1.0), rotate_degrees: float = 10.0,
                 flip_probability: float = 0.5, non_square: str = "squash",
                 image_standardization: str = "none"):
        self.root = _check_root(root)
        self.non_square = _check_non_square(non_square)
        self.image_standardization = check_standardization(image_standardization)
        if split not in SPLITS:
            raise DataError(f"split must be one of {SPLITS}; got {split!r}")
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) \
                or image_size < 1:
            raise DataError(f"image_size must be a positive integer; got {image_size!r}")
        lo, hi = crop_scale
        if not 0 < lo <= hi <= 1:
            raise DataError(f"crop_scale must satisfy 0 < low <= high <= 1; got {crop_scale!r}")
        self.split = split
        self.image_size = int(image_size)
        requested = _parse_augment(augment)
        self.augmentations = requested if split == "train" else frozenset()
        self.crop_scale = (float(lo), float(hi))
        self.rotate_degrees = float(rotate_degrees)
        self.flip_probability = float(flip_probability)
        self.categories = self._resolve_categories(categories)
        self._has_masks = {c: self._category_has_masks(c) for c in self.categories}
        self.skipped: list[tuple[str, str]] = []
        self.samples: list[Sample] = []
        for category in self.categories:
            self.samples.extend(self._scan(category))
        self._cache: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None
        if skip_corrupt or cache is True:
            self._decode_all(skip_corrupt=skip_corrupt, keep=cache is True)
        self._cache = [None] * len(self.samples) if cache == "lazy" else self._cache
        for category in self.categories:
            if not any(s.category == category for s in self.samples):
                raise DataError(f"category {category!r} has no readable images left in split "
                                f"{split!r} under {self._folders[category]}")

    # --- discovery -------------------------------------------------------------------------------
    def _resolve_categories(self, categories) -> list[str]:
        self._folders = category_folders(self.root)
        found = list(self._folders)
        if not found:
            hint = (f"; {self.root} looks like a category folder itself, pass its parent "
                    f"{self.root.parent}" if (self.root / "train").is_dir() else "")
            raise DataError(f"no categories found under {self.root} (expected "
                            f"<root>/<category>/train/good/*.png as in MVTec AD){hint}")
        if categories is None:
            return found
        if isinstance(categories, (str, Path)):
            categories = [str(categories)]
        chosen = [str(c) for c in categories]
        if not chosen:
            raise DataError("categories is empty; pass None to take every category found")
        for name in chosen:
            if name not in found:
                close = difflib.get_close_matches(name, found, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DataError(f"unknown category {name!r} under {self.root}{hint}; "
                                f"categories found: {', '.join(found)}")
        return list(dict.fromkeys(chosen))

    def _category_has_masks(self, category: str) -> bool:
        gt = self._folders[category] / "ground_truth"
        return any(_image_files_any(d) for d in _visible_dirs(gt))

    def category_has_masks(self, category: str) -> bool:
        """True when the category ships pixel masks (a non-empty ground_truth/ folder)."""
        if category not in self._has_masks:
            raise DataError(f"category {category!r} is not in this data set; "
                            f"it holds: {', '.join(self.categories)}")
        return self._has_masks[category]

    def _scan(self, category: str) -> list[Sample]:
        folder = self._folders[category] / self.split
        if not folder.is_dir():
            raise DataError(f"category {category!r} has no {self.split}/ folder at {folder}")
        has_masks = self._has_masks[category]
        samples: list[Sample] = []
        missing_masks: list[Path] = []
        for defect_dir in _visible_dirs(folder):
            defect = defect_dir.name
            if self.split == "train" and defect != GOOD:
                continue
            label = 0 if defect == GOOD else 1
            gt_dir = self._folders[category] / "ground_truth" / defect
            for path in _image_files(defect_dir):
                mask_path = _find_mask(gt_dir, path) if label and has_masks else None
                if label and has_masks and mask_path is None:
                    missing_masks.append(path)
                samples.append(Sample(path, label, category, defect, mask_path,
                                      has_masks and (label == 0 or mask_path is not None)))
        if not samples:
            where = folder / GOOD if self.split == "train" else folder
            raise DataError(f"category {category!r} is empty: no images in {where}")
        if missing_masks:
            warnings.warn(f"{len(missing_masks)} defective image(s) of {category!r} have no mask in "
                          f"{self._folders[category] / 'ground_truth'} (e.g. {missing_masks[0].name}); "
                          f"they get has_mask=False", DataWarning, stacklevel=3)
        return samples

    def _decode_all(self, *, skip_corrupt: bool, keep: bool) -> None:
        kept: list[Sample] = []
        cache: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for sample in self.samples:
            try:
                pair = self._decode(sample)
            except DataError as err:
                if not skip_corrupt:
                    raise
                self.skipped.append((str(sample.path), str(err)))
                continue
            kept.append(sample)
            cache.append(pair if keep else None)
        self.samples = kept
        self._cache = cache if keep else None
        if self.skipped:
            names = ", ".join(Path(p).name for p, _ in self.skipped[:5])
            more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            warnings.warn(f"skipped {len(self.skipped)} unreadable file(s) under {self.root}: "
                          f"{names}{more} (see .skipped for reasons)", DataWarning, stacklevel=3)

    # --- reading ---------------------------------------------------------------------------------
    def _decode(self, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        img = _open(sample.path)
        image = resize_image(img, self.image_size, self.non_square)
        if sample.mask_path is None:
            return image, torch.zeros(1, self.image_size, self.image_size, dtype=torch.uint8)
        mask_img = _open(sample.mask_path)
        if mask_img.size != img.size:
            warnings.warn(f"mask {sample.mask_path} is {mask_img.size[0]}x{mask_img.size[1]} but its "
                          f"image is {img.size[0]}x{img.size[1]}; resized onto its image",
                          DataWarning, stacklevel=4)
        return image, resize_mask(mask_img, self.image_size, self.non_square, image_size=img.size)

    def _decode_and_keep(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self._decode(self.samples[index])
        if self._cache is not None:  # the lazy cache
            self._cache[index] = pair
        return pair

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        pair = self._cache[index] if self._cache is not None else None
        image_u8, mask_u8 = pair if pair is not None else self._decode_and_keep(index)
        image, mask = image_u8.float().div_(255.0), mask_u8.float()
        if self.augmentations:  # a sample without a mask file has an all-zero mask
            image, mask = self._augment(image, mask, mask_is_zero=sample.mask_path is None)
        image = apply_standardization(image, self.image_standardization)  # the control, last
        return {"image": image, "label": sample.label, "mask": mask, "has_mask": sample.has_mask,
                "category": sample.category, "defect_type": sample.defect_type,
                "path": str(sample.path)}

    def _augment(self, image: torch.Tensor, mask: torch.Tensor, mask_is_zero: bool = False):
        """Crop, rotate, flip; the mask follows (an all-zero one, ``mask_is_zero``, stays as it is)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tvf

        size = self.image_size
        if "crop" in self.augmentations:
            lo, hi = self.crop_scale
            scale = lo + (hi - lo) * torch.rand(()).item()
            side = max(1, round(size * scale ** 0.5))
            top = int(torch.randint(0, size - side + 1, ()).item())
            left = int(torch.randint(0, size - side + 1, ()).item())
            image = tvf.resized_crop(image, top, left, side, side, [size, size],
                                     InterpolationMode.BILINEAR, antialias=True)
            mask = mask if mask_is_zero else tvf.resized_crop(
                mask, top, left, side, side, [size, size], InterpolationMode.NEAREST)
        if "rotate" in self.augmentations and self.rotate_degrees > 0:
            angle = (torch.rand(()).item() * 2 - 1) * self.rotate_degrees
            # Fill the uncovered corners with the image's mean colour, not black.
            fill = image.mean(dim=(1, 2)).tolist()
            image = tvf.rotate(image, angle, InterpolationMode.BILINEAR, fill=fill)
            mask = mask if mask_is_zero else tvf.rotate(mask, angle, InterpolationMode.NEAREST, fill=[0.0])
        if "flip" in self.augmentations:
            if torch.rand(()).item() < self.flip_probability:
                image, mask = image.flip(-1), (mask if mask_is_zero else mask.flip(-1))
            if torch.rand(()).item() < self.flip_probability:
                image, mask = image.flip(-2), (mask if mask_is_zero else mask.flip(-2))
        return image.clamp_(0.0, 1.0), mask

    # --- summaries -------------------------------------------------------------------------------
    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def counts(self) -> dict[tuple[str, str], int]:
        """Number of images per (category, defect_type)."""
        return dict(Counter((s.category, s.defect_type) for s in self.samples))

    def __repr__(self) -> str:
        return (f"MVTecAD(root={str(self.root)!r}, categories={self.categories}, split={self.split!r}, "
                f"image_size={self.image_size}, non_square={self.non_square!r}, n={len(self)}, "
                f"augmentations={sorted(self.augmentations)})")


def _image_files_any(folder: Path) -> bool:
    return any(_is_sample_file(p) or (p.is_file() and p.stem.endswith("_mask")
                                      and p.suffix.lower() in IMAGE_EXTENSIONS)
               for p in folder.iterdir())
