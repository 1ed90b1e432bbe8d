"""Tiny MVTec-layout data sets and configurations for the training, run and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from maskad_core.training.config import TrainConfig

REAL_MVTEC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec_ad"


def _normal_image(rng: np.random.Generator, size: int, kind: str) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi)
    if kind == "stripes":
        base = 0.5 + 0.3 * np.sin(2 * np.pi * 4 * x + phase)
        rgb = np.stack([base, base * 0.8 + 0.1, 0.4 * np.ones_like(base)], axis=-1)
    else:
        base = 0.5 + 0.3 * np.cos(2 * np.pi * 3 * (x + y) + phase)
        rgb = np.stack([base, base, base], axis=-1)  # grayscale-looking category
    return np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1)


def make_mvtec_tree(root: Path, size: int = 32, n_train: int = 8, n_good: int = 3,
                    n_defective: int = 3, seed: int = 0) -> Path:
    """Two categories: ``stripes`` (with ground_truth masks) and ``waves`` (no ground_truth folder,
    like screw in ../shared). Defects are bright squares; masks mark them exactly."""
    rng = np.random.default_rng(seed)
    for category, has_masks in (("stripes", True), ("waves", False)):
        folder = root / category
        (folder / "train" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            _save(folder / "train" / "good" / f"{i:03d}.png", _normal_image(rng, size, category))
        (folder / "test" / "good").mkdir(parents=True, exist_ok=True)
        for i in range(n_good):
            _save(folder / "test" / "good" / f"{i:03d}.png", _normal_image(rng, size, category))
        (folder / "test" / "square").mkdir(parents=True, exist_ok=True)
        if has_masks:
            (folder / "ground_truth" / "square").mkdir(parents=True, exist_ok=True)
        for i in range(n_defective):
            image = _normal_image(rng, size, category)
            mask = np.zeros((size, size), dtype=np.uint8)
            side = size // 4
            top, left = rng.integers(0, size - side, size=2)
            mask[top:top + side, left:left + side] = 255
            image[mask > 0] = [1.0, 0.1, 0.1]
            _save(folder / "test" / "square" / f"{i:03d}.png", image)
            if has_masks:
                Image.fromarray(mask).save(folder / "ground_truth" / "square" / f"{i:03d}_mask.png")
    (root / "license.txt").write_text("test fixture\n")
    return root


def _save(path: Path, rgb: np.ndarray) -> None:
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)


def tiny_config(data_root: Path, **overrides) -> TrainConfig:
    """A configuration that trains in about a second on 2 CPU cores."""
    settings = dict(
        data_root=str(data_root), image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
        decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, mlp_ratio=2.0, epochs=2,
        batch_size=4, warmup_epochs=1, lpips="off", augment=["flip"], device="cpu",
    )
    settings.update(overrides)
    return TrainConfig(**settings).validate()
