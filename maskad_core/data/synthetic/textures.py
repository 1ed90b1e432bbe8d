"""The synthetic set's textures: crops of scikit-image's sample photographs (brick, grass, gravel)
and drawn surfaces (weave, wood, leather). Each draws a Scene with alpha 1 everywhere."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from PIL import Image
from scipy.spatial import cKDTree

from maskad_core.data.synthetic.drawing import Scene, _grid, _light, _noise, _rotate, _shade


@functools.lru_cache(maxsize=4)
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)().astype(np.uint8)


def _photo_texture(rng: np.random.Generator, size: int, name: str, tint: Sequence[float]) -> Scene:
    photo = _photo(name)
    side = int(photo.shape[0] * rng.uniform(0.4, 0.7))
    y0, x0 = rng.integers(0, photo.shape[0] - side + 1, size=2)
    patch = np.rot90(photo[y0:y0 + side, x0:x0 + side], k=int(rng.integers(4)))
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    img = Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.Resampling.LANCZOS)
    g = np.asarray(img, dtype=float) / 255.0
    g = (g - g.mean()) * rng.uniform(0.9, 1.1) + g.mean() * rng.uniform(0.93, 1.07)
    layer = np.clip(g[..., None] * np.asarray(tint, dtype=float) * 1.15, 0, 1)
    return Scene(layer.copy(), layer, np.ones((size, size)))


def texture_brick(rng, size):
    return _photo_texture(rng, size, "brick", (0.95, 0.62, 0.5))


def texture_grass(rng, size):
    return _photo_texture(rng, size, "grass", (0.62, 0.9, 0.42))


def texture_gravel(rng, size):
    return _photo_texture(rng, size, "gravel", (1.0, 1.0, 1.0))


def texture_weave(rng, size):
    x, y = _grid(size)
    threads = rng.uniform(9, 11)
    u, v = _rotate(x, y, 0, 0, rng.uniform(-0.05, 0.05))
    u = (u + rng.uniform(0, 2)) * threads / 2
    v = (v + rng.uniform(0, 2)) * threads / 2
    iu, iv = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = u - iu, v - iv
    weft_on_top = (iu + iv) % 2 == 0
    weft = np.sin(np.pi * fv) ** 0.6 * (0.75 + 0.25 * np.sin(np.pi * fu))
    warp = np.sin(np.pi * fu) ** 0.6 * (0.75 + 0.25 * np.sin(np.pi * fv))
    jitter = rng.normal(0, 0.04, size=64)
    fibres_h = _noise(rng, size, (0.6, 5.0)) * 0.05
    fibres_v = _noise(rng, size, (5.0, 0.6)) * 0.05
    shade_h = weft + jitter[iv % 64] + fibres_h
    shade_v = warp + jitter[(iu + 7) % 64] + fibres_v
    base_h = np.array([0.30, 0.36, 0.55]) * rng.uniform(0.92, 1.08)
    base_v = np.array([0.55, 0.58, 0.70]) * rng.uniform(0.92, 1.08)
    layer = np.where(weft_on_top[..., None], base_h * (0.45 + 0.75 * shade_h[..., None]),
                     base_v * (0.45 + 0.75 * shade_v[..., None]))
    layer = np.clip(layer, 0, 1)
    return Scene(layer.copy(), layer, np.ones((size, size)))


def texture_wood(rng, size):
    x, y = _grid(size)
    u, v = _rotate(x, y, 0, 0, rng.uniform(-0.15, 0.15))
    warp = _noise(rng, size, size / 6) * 0.12 + _noise(rng, size, size / 24) * 0.02
    t = u + warp + rng.uniform(0.2, 0.6) * (v + rng.uniform(-1, 1)) ** 2 * rng.choice([-1, 1])
    rings = (t * rng.uniform(5, 8) + rng.uniform(0, 1)) % 1.0
    late = rings ** 4
    streaks = _noise(rng, size, (size / 10, 0.7))
    light = np.array([0.80, 0.60, 0.40]) * rng.uniform(0.93, 1.05)
    dark = np.array([0.50, 0.31, 0.17]) * rng.uniform(0.9, 1.05)
    mix = np.clip(late * 0.85 + streaks[...] * 0.06 + 0.08, 0, 1)[..., None]
    layer = np.clip(light * (1 - mix) + dark * mix, 0, 1)
    return Scene(layer.copy(), layer, np.ones((size, size)))


def texture_leather(rng, size):
    cells = int(rng.integers(110, 150))
    pts = rng.uniform(0, size, size=(cells, 2))
    # Tile the points so the cell pattern has no edge effects.
    tiles = np.concatenate([pts + [dx, dy] for dx in (-size, 0, size) for dy in (-size, 0, size)])
    yy, xx = np.mgrid[0:size, 0:size]
    d, _ = cKDTree(tiles).query(np.stack([xx.ravel(), yy.ravel()], 1) + 0.5, k=2)
    gap = (d[:, 1] - d[:, 0]).reshape(size, size) / (size / np.sqrt(cells))
    crease = np.exp(-gap / 0.08)
    pores = _noise(rng, size, 0.8)
    height = -crease * 1.0 + pores * 0.05 + _noise(rng, size, size / 8) * 0.15
    shade = _shade(height, _light(rng), strength=size / 24)
    base = np.array([0.50, 0.30, 0.20]) * rng.uniform(0.9, 1.08)
    layer = np.clip(base * (0.55 + 0.55 * shade[..., None]) - 0.08 * crease[..., None], 0, 1)
    return Scene(layer.copy(), layer, np.ones((size, size)))
