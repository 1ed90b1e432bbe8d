"""The pack read back as uint8 tensors, for the run to keep on the device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.gpu.settings import PACK_FORMAT


class PackMissing(ValueError):
    """The pack folder or its manifest is missing or of another format."""


@dataclass
class Split:
    images: torch.Tensor  # (N, 3, S, S) uint8
    categories: list[str]
    labels: np.ndarray  # (N,) 0/1
    masks: torch.Tensor | None  # (N, S, S) bool; None for the training split
    has_mask: np.ndarray | None  # (N,) bool: pixel metrics apply


def read_manifest(pack: Path) -> dict:
    path = Path(pack) / "manifest.json"
    if not path.is_file():
        raise PackMissing(f"--pack {pack}: no manifest.json there; run `python -m bench.gpu pack "
                          f"--out {pack}` (or make gpu-pack) first")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != PACK_FORMAT:
        raise PackMissing(f"--pack {pack}: format {manifest.get('format')!r}, this run reads "
                          f"{PACK_FORMAT}; pack it again")
    return manifest


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        array = np.asarray(picture.convert("RGB"))  # a grey image repeated to 3 channels
    return array.transpose(2, 0, 1)


def _mask(path: Path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("L")) > 127


def load_split(pack: Path, manifest: dict, split: str) -> Split:
    size = int(manifest["image_size"])
    images, categories, labels, masks, has_mask = [], [], [], [], []
    for category in manifest["categories"]:
        for entry in manifest["files"][category][split]:
            images.append(_image(Path(pack) / category / entry["file"]))
            categories.append(category)
            labels.append(entry["label"])
            has_mask.append(entry["has_mask"])
            if split == "test":
                masks.append(_mask(Path(pack) / category / entry["mask"]) if entry["mask"]
                             else np.zeros((size, size), dtype=bool))
    return Split(torch.from_numpy(np.stack(images)), categories, np.asarray(labels, dtype=np.int64),
                 torch.from_numpy(np.stack(masks)) if masks else None,
                 np.asarray(has_mask, dtype=bool) if split == "test" else None)
