"""The train and test splits a TrainConfig describes: its data root (the embedded synthetic set,
generated when no root is given), the images per category it is limited to, the samples in order.

Training, evaluation and the notebooks open their data here, so all three see the same images.
``check_data`` finds what would stop a run (missing split folders, empty or unreadable image files)
before training; ``data_fingerprint`` identifies the data's files, and is part of a run's id.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from maskad_core.data.mvtec import IMAGE_EXTENSIONS, DataError, MVTecAD, category_folders
from maskad_core.data.synthetic import default_data_root
from maskad_core.training.config import TrainConfig

MAX_NAMED = 10  # bad files check_data names one by one; the rest are counted
FINGERPRINT_FOLDERS = ("train", "test", "ground_truth")  # of each category, in data_fingerprint
_HEADER_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError,
                  Image.DecompressionBombError)


def data_root_of(config: TrainConfig) -> Path:
    """The folder the config's images come from: its data_root, or the embedded synthetic set
    (generated if needed)."""
    if config.data_root is not None:
        return Path(config.data_root).expanduser()
    return Path(default_data_root())


def image_options(config: TrainConfig) -> dict:
    """How the config's images are read, beyond their size: the non-square rule and the control
    (keyword arguments of ``data.MVTecAD`` and ``data.read_image``)."""
    return {"non_square": config.non_square, "image_standardization": config.image_standardization}


def open_dataset(config: TrainConfig, split: str, data_root: str | Path | None = None,
                 augment: bool = False) -> tuple[Dataset, MVTecAD]:
    """(dataset to iterate, the underlying MVTecAD) for a split, limited per category if configured."""
    root = Path(data_root) if data_root is not None else data_root_of(config)
    limit = (config.max_train_images_per_category if split == "train"
             else config.max_test_images_per_category)
    full = MVTecAD(root, categories=config.categories, split=split, image_size=config.image_size,
                   augment=list(config.augment) if augment else False,
                   # training images decoded once: all of them, or a limited subset's own when first read
                   cache=split == "train" and (True if limit is None else "lazy"),
                   **image_options(config))
    if limit is None:
        return full, full
    return Subset(full, limit_per_category(full, limit)), full


def check_data(config: TrainConfig) -> Path:
    """Resolve (and if needed generate) the data root and scan both splits: DataError if the data
    cannot serve this configuration (a category without its train/ or test/ folder, an empty split,
    image or mask files that are empty or whose header no image reader recognises, every one of
    them named up to ten). Cheap: headers are read, no image is decoded."""
    root = data_root_of(config)
    bad: list[str] = []
    for split in ("train", "test"):
        dataset = MVTecAD(root, categories=config.categories, split=split,
                          image_size=config.image_size, **image_options(config))
        for sample in dataset.samples:
            for path in (sample.path, sample.mask_path):
                problem = _header_problem(path) if path is not None else None
                if problem:
                    bad.append(f"{_relative(path, root)} ({problem})")
    if bad:
        shown = "; ".join(bad[:MAX_NAMED])
        more = f"; and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
        raise DataError(f"{len(bad)} image file(s) under {root} cannot be read: {shown}{more}. "
                        "Replace or remove them before training")
    return root


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _header_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an image (empty, unreadable, unrecognised header), else None.
    Only the header is read: PIL's open identifies the format without decoding the pixels."""
    try:
        if path.stat().st_size == 0:
            return "empty file, 0 bytes"
        with Image.open(path):  # identifies the format from the header; pixels stay unread
            pass
    except _HEADER_ERRORS as error:
        return f"{type(error).__name__}: {getattr(error, 'strerror', None) or error}"
    return None


def data_fingerprint(config: TrainConfig) -> dict:
    """What identifies the data a configuration trains and is tested on, cheaply (no file is
    decoded): every image file under the selected categories' train/, test/ and ground_truth/
    folders with its size and the sha256 of its bytes. Content, not modification times: touching
    the files changes nothing. (A run's id also hashes ``data_root``'s absolute path, so a copy of
    the images at another path is another run; see the README's "Runs".)

    Returns ``{"digest": sha256 hex, "files": count, "categories": {name: count}, "root": str}``;
    the digest changes when an image is added, removed, renamed or rewritten.
    """
    root = data_root_of(config)
    folders = category_folders(root)
    names = config.categories if config.categories is not None else list(folders)
    unknown = [name for name in names if name not in folders]
    if unknown:
        raise DataError(f"unknown category {unknown[0]!r} under {root}; "
                        f"categories found: {', '.join(folders) or 'none'}")
    lines: list[str] = []
    counts: dict[str, int] = {}
    for name in names:
        entries = _file_entries(root, folders[name])
        counts[name] = len(entries)
        lines.extend(entries)
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    return {"digest": digest, "files": len(lines), "categories": counts, "root": str(root)}


def _file_entries(root: Path, category: Path) -> list[str]:
    """'relative name<TAB>size<TAB>sha256' of each image file of one category's folders."""
    entries = []
    for sub in FINGERPRINT_FOLDERS:
        for folder, dirs, files in os.walk(category / sub):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            for name in files:
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                path = Path(folder) / name
                content = path.read_bytes()
                digest = hashlib.sha256(content).hexdigest()
                entries.append(f"{path.relative_to(root).as_posix()}\t{len(content)}\t{digest}")
    return entries


def limit_per_category(dataset: MVTecAD, limit: int) -> list[int]:
    """Indices of at most ``limit`` images per category, spread evenly over each category's list
    (so a test subset keeps good and defective images of several defect types)."""
    by_category: dict[str, list[int]] = {}
    for index, sample in enumerate(dataset.samples):
        by_category.setdefault(sample.category, []).append(index)
    chosen: list[int] = []
    for indices in by_category.values():
        if len(indices) <= limit:
            chosen.extend(indices)
        else:
            picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
            chosen.extend(indices[i] for i in sorted(set(picks.tolist())))
    return chosen


def dataset_samples(dataset: Dataset):
    """The data.Sample records of a dataset or a Subset of one, in iteration order."""
    if isinstance(dataset, Subset):
        return [dataset.dataset.samples[i] for i in dataset.indices]
    return list(dataset.samples)
