"""The train and test splits a TrainConfig describes: its data root (the embedded synthetic set,
generated when no root is given), the images per category it is limited to, the samples in order.

Training, evaluation and the notebooks open their data here, so all three see the same images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Subset

from maskad_core.config import TrainConfig
from maskad_core.data import MVTecAD
from maskad_core.synthetic import default_data_root


def data_root_of(config: TrainConfig) -> Path:
    """The folder the config's images come from: its data_root, or the embedded synthetic set
    (generated if needed)."""
    if config.data_root is not None:
        return Path(config.data_root).expanduser()
    return Path(default_data_root())


def open_dataset(config: TrainConfig, split: str, data_root: str | Path | None = None,
                 augment: bool = False) -> tuple[Dataset, MVTecAD]:
    """(dataset to iterate, the underlying MVTecAD) for a split, limited per category if configured."""
    root = Path(data_root) if data_root is not None else data_root_of(config)
    limit = (config.max_train_images_per_category if split == "train"
             else config.max_test_images_per_category)
    full = MVTecAD(root, categories=config.categories, split=split, image_size=config.image_size,
                   augment=list(config.augment) if augment else False,
                   cache=split == "train" and limit is None)
    if limit is None:
        return full, full
    return Subset(full, limit_per_category(full, limit)), full


def check_data(config: TrainConfig) -> Path:
    """Resolve (and if needed generate) the data root and scan both splits: DataError if the data
    cannot serve this configuration. Cheap: no image is decoded."""
    root = data_root_of(config)
    for split in ("train", "test"):
        MVTecAD(root, categories=config.categories, split=split, image_size=config.image_size)
    return root


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
