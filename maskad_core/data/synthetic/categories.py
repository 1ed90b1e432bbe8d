"""The synthetic categories (a texture or object drawing and its defect types) and how one image
pair is drawn: every image from its own generator seeded by (seed, category, split, index, defect)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from maskad_core.data.mvtec import DataError
from maskad_core.data.synthetic.defects import DEFECTS
from maskad_core.data.synthetic.drawing import _to_uint8
from maskad_core.data.synthetic.objects import (
    object_cap,
    object_nut,
    object_pill,
    object_screw,
    object_washer,
)
from maskad_core.data.synthetic.textures import (
    texture_brick,
    texture_grass,
    texture_gravel,
    texture_leather,
    texture_weave,
    texture_wood,
)


@dataclass(frozen=True)
class CategorySpec:
    name: str
    kind: str  # "texture" or "object"
    draw: Callable
    defects: tuple[str, ...]
    grayscale: bool = False


CATEGORY_SPECS: tuple[CategorySpec, ...] = (
    CategorySpec("brick", "texture", texture_brick, ("crack", "hole", "stain", "color")),
    CategorySpec("grass", "texture", texture_grass, ("hole", "stain", "color", "scratch")),
    CategorySpec("gravel", "texture", texture_gravel, ("hole", "stain", "crack", "color"), True),
    CategorySpec("weave", "texture", texture_weave, ("hole", "stain", "color", "scratch")),
    CategorySpec("wood", "texture", texture_wood, ("scratch", "crack", "hole", "color")),
    CategorySpec("leather", "texture", texture_leather, ("scratch", "hole", "stain", "color")),
    CategorySpec("nut", "object", object_nut, ("scratch", "missing", "stain", "color")),
    CategorySpec("washer", "object", object_washer, ("scratch", "missing", "stain", "crack")),
    CategorySpec("pill", "object", object_pill, ("crack", "stain", "color", "missing")),
    CategorySpec("screw", "object", object_screw, ("scratch", "bent", "missing", "stain"), True),
    CategorySpec("cap", "object", object_cap, ("scratch", "stain", "color", "missing")),
)
SYNTHETIC_CATEGORIES: tuple[str, ...] = tuple(s.name for s in CATEGORY_SPECS)
SPECS_BY_NAME = {s.name: s for s in CATEGORY_SPECS}


def _draw(spec: CategorySpec, rng, size):
    out = spec.draw(rng, size)
    return out if isinstance(out, tuple) else (out, None)


def _bent(spec, rng, size, scene, params, sev):
    bent_params = dict(params, bend=float(rng.choice([-1, 1]) * (0.12 + 0.5 * sev)))
    bent_scene, _ = spec.draw(rng, size, bent_params)
    bent_scene.background = scene.background
    return bent_scene, None


def draw_pair(category: str, seed: int, split: str, index: int, size: int,
              defect: str | None = None, severity: float = 0.5
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normal image, image with the defect, 0/1 mask of exactly the pixels that differ).

    Images are uint8, HxW for grayscale categories else HxWx3; the mask is HxW uint8. Without a
    defect both images are the same normal image and the mask is empty.
    """
    if category not in SPECS_BY_NAME:
        raise DataError(f"unknown synthetic category {category!r}; "
                        f"choose from {', '.join(SYNTHETIC_CATEGORIES)}")
    spec = SPECS_BY_NAME[category]
    if defect is not None and defect not in spec.defects:
        raise DataError(f"{category} has no defect type {defect!r}; it has {', '.join(spec.defects)}")
    key = [seed, zlib.crc32(category.encode()), zlib.crc32(split.encode()), index,
           zlib.crc32((defect or "good").encode())]
    rng = np.random.default_rng(np.random.SeedSequence(key))
    scene, params = _draw(spec, rng, size)
    normal = _finish(scene.render(), spec.grayscale)
    if defect is None:
        return normal, normal.copy(), np.zeros((size, size), dtype=np.uint8)
    roi = scene.alpha > 0.95
    # redraw placement until the defect visibly changes a few pixels; on small images a faint
    # defect can vanish in rounding, so after 20 tries the severity is raised step by step
    for attempt in range(40):
        sev = severity if attempt < 20 else min(1.0, severity + 0.05 * (attempt - 19))
        if defect == "bent":
            candidate, _ = _bent(spec, rng, size, scene, params, sev)
        else:
            candidate = scene.copy()
            DEFECTS[defect](rng, candidate, sev, roi, spec.grayscale)
        defective = _finish(candidate.render(), spec.grayscale)
        diff = np.abs(normal.astype(int) - defective.astype(int))
        mask = diff.max(-1) > 0 if diff.ndim == 3 else diff > 0
        if mask.sum() >= 3:
            return normal, defective, mask.astype(np.uint8)
    raise DataError(f"could not place a visible {defect} defect on synthetic {category} #{index} "
                    f"at {size} px; use a larger image_size or another seed")


def _finish(img: np.ndarray, grayscale: bool) -> np.ndarray:
    img = _to_uint8(img)
    return img.mean(-1).round().astype(np.uint8) if grayscale else img


def draw_sample(category: str, seed: int, split: str, index: int, size: int,
                defect: str | None = None, severity: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One image as written to disk and its 0/1 mask (see draw_pair)."""
    _, image, mask = draw_pair(category, seed, split, index, size, defect, severity)
    return image, mask
