"""The embedded default data set: procedurally drawn industrial textures and parts with defects.

Written to disk in MVTec AD's layout, so :class:`maskad_core.data.MVTecAD` reads it unchanged.
It is synthetic and never to be mistaken for MVTec AD: the root holds README.md and metadata.json
saying so. Every image is drawn from its own numpy generator seeded by (seed, category, split,
index), so the same seed gives byte-identical PNGs. Drawing is vectorised numpy (signed distance
fields for shapes, filtered noise for surfaces); masks are exactly the pixels a defect changed.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from .data import DataError
from .paths import data_dir

GENERATOR_VERSION = 1
DEFAULT_SEED = 0
DEFAULT_IMAGE_SIZE = 128
DEFAULT_TRAIN_GOOD = 60
DEFAULT_TEST_GOOD = 20
DEFAULT_TEST_DEFECTIVE = 30
MARKER_NAME = ".maskad_complete.json"

# --------------------------------------------------------------------------------------------------
# drawing helpers (coordinates: x, y in [-1, 1], y pointing down; one pixel = 2 / size)


@dataclass
class Scene:
    """An object layer over a background; textures have alpha = 1 everywhere."""

    background: np.ndarray  # (S, S, 3) float
    layer: np.ndarray  # (S, S, 3) float
    alpha: np.ndarray  # (S, S) float coverage of the layer

    def render(self) -> np.ndarray:
        a = self.alpha[..., None]
        return np.clip(self.background * (1 - a) + self.layer * a, 0.0, 1.0)

    def copy(self) -> Scene:
        return Scene(self.background.copy(), self.layer.copy(), self.alpha.copy())


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    x, y = np.meshgrid(c, c)
    return x, y


def _coverage(sdf: np.ndarray, size: int) -> np.ndarray:
    """Antialiased coverage of the region sdf < 0 (sdf in normalised units)."""
    return np.clip(0.5 - sdf * size / 2.0, 0.0, 1.0)


def _rotate(x, y, cx, cy, angle):
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def _noise(rng: np.random.Generator, size: int, sigma: float | tuple[float, float]) -> np.ndarray:
    """Smooth noise, zero mean, unit std; sigma in pixels (a pair gives streaks)."""
    n = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (n - n.mean()) / (n.std() + 1e-8)


def _shade(height: np.ndarray, light: np.ndarray, strength: float) -> np.ndarray:
    """Lambert shading of a height field under a unit light direction (lx, ly, lz)."""
    gy, gx = np.gradient(height)
    nx, ny, nz = -gx * strength, -gy * strength, np.ones_like(height)
    norm = np.sqrt(nx * nx + ny * ny + nz * nz)
    return np.clip((nx * light[0] + ny * light[1] + nz * light[2]) / norm, 0.0, 1.0)


def _light(rng: np.random.Generator) -> np.ndarray:
    az = rng.uniform(0, 2 * np.pi)
    v = np.array([np.cos(az) * 0.6, np.sin(az) * 0.6, 0.8])
    return v / np.linalg.norm(v)


def _segments_distance(px: np.ndarray, py: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from each pixel (px, py) to a polyline through points (N, 2), same units."""
    a, b = points[:-1], points[1:]
    best = np.full(px.shape, np.inf)
    for (ax, ay), (bx, by) in zip(a, b, strict=True):
        ex, ey = bx - ax, by - ay
        denom = ex * ex + ey * ey + 1e-12
        h = np.clip(((px - ax) * ex + (py - ay) * ey) / denom, 0.0, 1.0)
        dx, dy = px - ax - h * ex, py - ay - h * ey
        np.minimum(best, np.sqrt(dx * dx + dy * dy), out=best)
    return best


def _blob(rng: np.random.Generator, size: int, center: tuple[float, float], radius: float,
          roughness: float = 0.25) -> np.ndarray:
    """Signed 'inside-ness' of an irregular blob in pixels: > 0 inside, radius scaled to 1 at centre."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    dx, dy = xx - center[0], yy - center[1]
    theta = np.arctan2(dy, dx)
    r = np.sqrt(dx * dx + dy * dy)
    edge = np.ones_like(theta)
    for k in (2, 3, 5):
        edge += roughness / k * rng.uniform(0.3, 1.0) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return 1.0 - r / (radius * edge)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# textures


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


# --------------------------------------------------------------------------------------------------
# objects (each returns the scene plus the parameters, so "bent" can redraw with one change)


def _background(rng, size, level, tint=(1.0, 1.0, 1.0), grain=0.02):
    x, y = _grid(size)
    g = level * rng.uniform(0.92, 1.08) + 0.05 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y)
    g = g + _noise(rng, size, 1.0) * grain + _noise(rng, size, size / 5) * 0.02
    return np.clip(g[..., None] * np.asarray(tint), 0, 1)


def _jitter(rng, amount=0.07):
    return rng.uniform(-amount, amount), rng.uniform(-amount, amount)


def _hexagon_sdf(px, py, inradius):
    kx, ky, kz = -0.866025404, 0.5, 0.577350269
    px, py = np.abs(px), np.abs(py)
    d = 2.0 * np.minimum(kx * px + ky * py, 0.0)
    px, py = px - d * kx, py - d * ky
    px = px - np.clip(px, -kz * inradius, kz * inradius)
    py = py - inradius
    return np.sqrt(px * px + py * py) * np.sign(py)


def object_nut(rng, size, params=None):
    p = params or {"c": _jitter(rng), "angle": rng.uniform(0, np.pi / 3), "r": rng.uniform(0.5, 0.56),
                   "hole": rng.uniform(0.22, 0.26), "light": _light(rng), "gain": rng.uniform(0.85, 1.1),
                   "bg": rng.uniform(0.10, 0.16)}
    x, y = _grid(size)
    u, v = _rotate(x, y, *p["c"], p["angle"])
    rad = np.sqrt(u * u + v * v)
    sdf = np.maximum(_hexagon_sdf(u, v, p["r"]), p["hole"] - rad)
    alpha = _coverage(sdf, size)
    bevel = np.clip(-sdf / 0.08, 0, 1)
    face = np.clip((p["r"] * 0.98 - rad) / 0.03, 0, 1)  # round chamfered top face
    height = bevel * 0.6 + face * 0.4
    shade = _shade(height, p["light"], strength=size / 6)
    rings = 0.04 * np.sin(rad * size * 1.3)
    metal = np.array([0.78, 0.76, 0.72]) * p["gain"]
    layer = np.clip(metal * (0.35 + 0.75 * shade[..., None]) + rings[..., None], 0, 1)
    return Scene(_background(rng, size, p["bg"]), layer, alpha), p


def object_washer(rng, size, params=None):
    p = params or {"c": _jitter(rng), "r": rng.uniform(0.56, 0.62), "hole": rng.uniform(0.24, 0.3),
                   "light": _light(rng), "gain": rng.uniform(0.85, 1.1), "bg": rng.uniform(0.35, 0.45)}
    x, y = _grid(size)
    u, v = x - p["c"][0], y - p["c"][1]
    rad = np.sqrt(u * u + v * v)
    sdf = np.maximum(rad - p["r"], p["hole"] - rad)
    alpha = _coverage(sdf, size)
    height = np.clip(-sdf / 0.1, 0, 1)
    shade = _shade(height, p["light"], strength=size / 8)
    machining = 0.035 * np.sin(rad * size * 2.1) + 0.02 * _noise(rng, size, 0.7)
    brass = np.array([0.85, 0.68, 0.35]) * p["gain"]
    layer = np.clip(brass * (0.4 + 0.7 * shade[..., None]) + machining[..., None], 0, 1)
    return Scene(_background(rng, size, p["bg"], (0.95, 0.97, 1.0), 0.04), layer, alpha), p


def object_pill(rng, size, params=None):
    n_specks = int(rng.integers(15, 40))
    p = params or {"c": _jitter(rng, 0.05), "angle": rng.uniform(-0.12, 0.12),
                   "length": rng.uniform(0.36, 0.42), "r": rng.uniform(0.27, 0.31),
                   "light": _light(rng), "gain": rng.uniform(0.92, 1.04), "bg": rng.uniform(0.05, 0.1),
                   "specks": rng.uniform(-1, 1, size=(n_specks, 2)), "speck_r": rng.uniform(0.3, 0.9, n_specks)}
    x, y = _grid(size)
    u, v = _rotate(x, y, *p["c"], p["angle"])
    along = np.clip(u, -p["length"], p["length"])
    dist = np.sqrt((u - along) ** 2 + v * v)
    sdf = dist - p["r"]
    alpha = _coverage(sdf, size)
    dome = np.sqrt(np.clip(1 - (dist / p["r"]) ** 2, 0, 1))
    shade = _shade(dome, p["light"], strength=size / 10)
    groove = np.exp(-(u / 0.012) ** 2) * (np.abs(v) < p["r"] * 0.7) * 0.12
    base = np.array([0.93, 0.91, 0.86]) * p["gain"]
    layer = base * (0.55 + 0.5 * shade[..., None]) - groove[..., None]
    spx = p["specks"][:, 0] * (p["length"] + p["r"] * 0.6)
    spy = p["specks"][:, 1] * p["r"] * 0.7
    yy, xx = u[..., None] - spx, v[..., None] - spy
    speck = np.clip(1.5 - np.sqrt(xx * xx + yy * yy).min(-1) * size / 2 / p["speck_r"].mean(), 0, 1)
    layer = layer * (1 - speck[..., None] * 0.6) + speck[..., None] * np.array([0.55, 0.18, 0.15]) * 0.6
    return Scene(_background(rng, size, p["bg"]), np.clip(layer, 0, 1), alpha), p


def object_screw(rng, size, params=None):
    p = params or {"c": _jitter(rng, 0.1), "angle": rng.uniform(0, 2 * np.pi),
                   "length": rng.uniform(0.95, 1.05), "head": rng.uniform(0.16, 0.19),
                   "shaft": rng.uniform(0.065, 0.075), "pitch": rng.uniform(0.055, 0.065),
                   "light": _light(rng), "gain": rng.uniform(0.9, 1.1), "bg": rng.uniform(0.72, 0.82),
                   "bend": 0.0}
    x, y = _grid(size)
    u, v = _rotate(x, y, *p["c"], p["angle"])
    start = -p["length"] / 2 + p["head"] * 0.7
    knee = start + (p["length"] - p["head"] * 0.7) * 0.65
    # "bent": the part of the shaft beyond the knee is rotated about it.
    bu, bv = _rotate(u, v, knee, 0.0, p["bend"])
    bu, bv = bu + knee, bv
    beyond = (u > knee) if p["bend"] == 0 else (bu > knee)
    su, sv = np.where(beyond, bu, u), np.where(beyond, bv, v)
    end = p["length"] / 2
    t = np.clip((su - start) / (end - start), 0, 1)
    radius = p["shaft"] * np.where(t < 0.8, 1.0, np.clip((1 - t) / 0.2, 0.05, 1.0))
    shaft = np.where((su >= start) & (su <= end), np.abs(sv) - radius, np.inf)
    hu = u + p["length"] / 2
    head = np.sqrt(hu * hu + v * v) - p["head"]
    shaft_d = np.where(su < start, np.sqrt((su - start) ** 2 + sv * sv) - p["shaft"], shaft)
    sdf = np.minimum(head, shaft_d)
    alpha = _coverage(sdf, size)
    cyl = np.sqrt(np.clip(1 - (sv / (radius + 1e-6)) ** 2, 0, 1))
    thread = 0.5 + 0.5 * np.sin((su - start) / p["pitch"] * 2 * np.pi + 3.0 * sv / p["shaft"])
    shaft_shade = cyl * (0.55 + 0.45 * thread)
    head_h = np.sqrt(np.clip(1 - (np.sqrt(hu * hu + v * v) / p["head"]) ** 2, 0, 1))
    slot = (np.abs(v) < p["head"] * 0.15) & (np.abs(hu) < p["head"] * 0.8)
    head_shade = _shade(head_h, p["light"], strength=size / 12) - slot * 0.45
    tone = np.where(head < shaft_d, head_shade, shaft_shade) * p["gain"]
    layer = np.clip(0.12 + 0.55 * tone, 0, 1)[..., None].repeat(3, -1)
    return Scene(_background(rng, size, p["bg"], grain=0.015), layer, alpha), p


def object_cap(rng, size, params=None):
    p = params or {"c": _jitter(rng), "angle": rng.uniform(0, 2 * np.pi), "r": rng.uniform(0.56, 0.62),
                   "light": _light(rng), "gain": rng.uniform(0.88, 1.08), "bg": rng.uniform(0.55, 0.68),
                   "teeth": int(rng.integers(19, 24))}
    x, y = _grid(size)
    u, v = _rotate(x, y, *p["c"], p["angle"])
    rad = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    edge = p["r"] * (1 + 0.035 * np.sin(p["teeth"] * theta))
    sdf = rad - edge
    alpha = _coverage(sdf, size)
    height = np.clip((edge - rad) / 0.12, 0, 1) ** 0.7 - 0.25 * np.exp(-((rad - 0.38 * p["r"] / 0.6) / 0.02) ** 2)
    shade = _shade(height, p["light"], strength=size / 8)
    red = np.array([0.78, 0.13, 0.12]) * p["gain"]
    logo = (np.abs(rad - 0.2) < 0.025) | ((np.abs(u) < 0.025) & (rad < 0.2))
    layer = red * (0.35 + 0.8 * shade[..., None])
    layer = np.where(logo[..., None], np.array([0.92, 0.88, 0.8]) * (0.4 + 0.6 * shade[..., None]), layer)
    bg = _background(rng, size, p["bg"], (1.0, 0.96, 0.88), 0.03)
    return Scene(bg, np.clip(layer, 0, 1), alpha), p


# --------------------------------------------------------------------------------------------------
# defects: each changes a copy of the scene and returns it with the mask of changed pixels.
# severity in [0, 1] scales size and contrast: near 0 small and faint, near 1 large and obvious.


def _pick_center(rng, roi: np.ndarray, margin: float) -> tuple[float, float]:
    # Pad with background so the image border counts as an edge too.
    depth = ndimage.distance_transform_edt(np.pad(roi, 1))[1:-1, 1:-1]
    ok = depth >= margin
    if not ok.any():
        ok = depth >= depth.max()
    ys, xs = np.nonzero(ok)
    i = rng.integers(len(xs))
    return float(xs[i]) + rng.uniform(-0.5, 0.5), float(ys[i]) + rng.uniform(-0.5, 0.5)


def _stroke(size, points, width):
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    a = np.clip(width / 2 + 0.5 - _segments_distance(xx, yy, points), 0, 1)
    return np.where(a >= 0.35, a, 0.0)


def _paint(scene, weight, target, roi):
    """Blend the layer towards target (S,S,3) or colour with weight (S,S), inside roi only."""
    w = (weight * roi)[..., None]
    scene.layer = np.clip(scene.layer * (1 - w) + np.asarray(target) * w, 0, 1)
    return w[..., 0] > 0


def defect_scratch(rng, scene, sev, roi, gray):
    size = roi.shape[0]
    cx, cy = _pick_center(rng, roi, 3)
    length = size * (0.06 + 0.3 * sev)
    ang = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.4, 0.4) * length
    t = np.linspace(-0.5, 0.5, 12)[:, None]
    d = np.array([np.cos(ang), np.sin(ang)])
    n = np.array([-d[1], d[0]])
    pts = np.array([cx, cy]) + t * length * d + (1 - 4 * t ** 2) * bend * n
    w = _stroke(size, pts, rng.uniform(0.8, 1.2) + sev)
    lum = scene.layer.mean(-1, keepdims=True)
    contrast = 0.1 + 0.55 * sev
    target = np.clip(lum + contrast if rng.random() < 0.6 else lum - contrast, 0, 1).repeat(3, -1)
    return _paint(scene, w, target, roi)


def defect_crack(rng, scene, sev, roi, gray):
    size = roi.shape[0]
    cx, cy = _pick_center(rng, roi, 3)
    steps = int(5 + 12 * sev)
    step = size * 0.025
    ang = rng.uniform(0, 2 * np.pi)
    pts = [np.array([cx, cy])]
    for _ in range(steps):
        ang += rng.uniform(-0.7, 0.7)
        pts.append(pts[-1] + step * rng.uniform(0.6, 1.2) * np.array([np.cos(ang), np.sin(ang)]))
    w = _stroke(size, np.array(pts), 0.9 + 1.3 * sev)
    depth = 0.3 + 0.6 * sev
    return _paint(scene, w, scene.layer * (1 - depth), roi)


def defect_hole(rng, scene, sev, roi, gray):
    size = roi.shape[0]
    radius = max(1.5, size * (0.025 + 0.07 * sev))
    cx, cy = _pick_center(rng, roi, radius)
    inside = _blob(rng, size, (cx, cy), radius, 0.35)
    w = np.where(inside > 0, np.clip(inside * 4, 0.5, 1.0), 0.0) * (0.55 + 0.45 * sev)
    dark = scene.layer * 0.15 + 0.03
    return _paint(scene, w, dark, roi)


def defect_stain(rng, scene, sev, roi, gray):
    size = roi.shape[0]
    radius = max(1.5, size * (0.03 + 0.07 * sev))
    cx, cy = _pick_center(rng, roi, radius * 0.5)
    inside = _blob(rng, size, (cx, cy), radius, 0.45)
    opacity = 0.2 + 0.6 * sev
    w = np.where(inside > 0, np.clip(0.6 + inside, 0, 1) * opacity, 0.0)
    colours = [(0.30, 0.20, 0.10), (0.08, 0.08, 0.08), (0.75, 0.45, 0.15), (0.9, 0.9, 0.85)]
    colour = np.array(colours[int(rng.integers(len(colours)))], dtype=float)
    if gray:
        colour = colour.mean().repeat(3)
    return _paint(scene, w, colour, roi)


def defect_color(rng, scene, sev, roi, gray):
    size = roi.shape[0]
    radius = max(2.0, size * (0.06 + 0.12 * sev))
    cx, cy = _pick_center(rng, roi, radius * 0.5)
    inside = _blob(rng, size, (cx, cy), radius, 0.3)
    w = np.where(inside > 0, np.clip(0.5 + inside, 0, 1), 0.0)
    shift = rng.standard_normal(3)
    shift = shift.mean().repeat(3) if gray else shift
    shift = shift / (np.abs(shift).max() + 1e-8) * (0.06 + 0.25 * sev)
    return _paint(scene, w, np.clip(scene.layer + shift, 0, 1), roi)


def defect_missing(rng, scene, sev, roi, gray):
    """A chunk broken off the part's edge: the background shows through."""
    size = roi.shape[0]
    rim = (scene.alpha > 0.3) & (scene.alpha < 0.95)
    radius = max(1.5, size * (0.04 + 0.09 * sev))
    cx, cy = _pick_center(rng, rim, 0)
    inside = _blob(rng, size, (cx, cy), radius, 0.4) > 0
    scene.alpha = np.where(inside, 0.0, scene.alpha)
    return inside


DEFECTS: dict[str, Callable] = {
    "scratch": defect_scratch, "crack": defect_crack, "hole": defect_hole, "stain": defect_stain,
    "color": defect_color, "missing": defect_missing, "bent": None,
}


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
_SPEC_BY_NAME = {s.name: s for s in CATEGORY_SPECS}


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
    if category not in _SPEC_BY_NAME:
        raise DataError(f"unknown synthetic category {category!r}; "
                        f"choose from {', '.join(SYNTHETIC_CATEGORIES)}")
    spec = _SPEC_BY_NAME[category]
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


# --------------------------------------------------------------------------------------------------
# writing the data set


def _split_plan(categories, n_train, n_test_good, n_test_defective):
    for cat in categories:
        spec = _SPEC_BY_NAME[cat]
        for i in range(n_train):
            yield cat, "train", "good", i, None, 0.0
        for i in range(n_test_good):
            yield cat, "test", "good", i, None, 0.0
        per_type = [n_test_defective // len(spec.defects) + (k < n_test_defective % len(spec.defects))
                    for k in range(len(spec.defects))]
        for defect, count in zip(spec.defects, per_type, strict=True):
            for i in range(count):
                # Stratified severities: each defect type spans faint to obvious.
                yield cat, "test", defect, i, defect, (i + 0.5) / count


def _params(seed, image_size, categories, n_train, n_test_good, n_test_defective) -> dict:
    return {"generator": "maskad_core.synthetic", "version": GENERATOR_VERSION, "seed": int(seed),
            "image_size": int(image_size), "categories": list(categories), "n_train_good": n_train,
            "n_test_good": n_test_good, "n_test_defective": n_test_defective}


_README = """# maskad synthetic industrial inspection set (NOT MVTec AD)

Procedurally generated by `maskad_core.synthetic` (generator version {version}), seed {seed},
{image_size} px. Never mistake it for MVTec AD, nor report results on it as MVTec AD results.

Textures brick, grass and gravel are crops of scikit-image's sample photographs (CC0:
cc0textures.com Bricks25 and Gravel04, DeviantArt linolafett Grass-01); everything else is drawn.

Layout as MVTec AD: <category>/train/good, test/good, test/<defect>,
ground_truth/<defect>/<name>_mask.png (0/255, exactly the pixels the defect changed).
Per category: {n_train_good} train good, {n_test_good} test good, {n_test_defective} test defective.
defects.csv lists each defective image's severity (0 faint and small .. 1 obvious) and mask size.
"""


def _validate(seed, image_size, categories, counts):
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise DataError(f"image_size must be an integer >= 32; got {image_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer; got {seed!r}")
    for name, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < (1 if name != "n_train" else 1):
            raise DataError(f"{name} must be a positive integer; got {n!r}")
    cats = list(SYNTHETIC_CATEGORIES if categories is None else
                ([categories] if isinstance(categories, str) else categories))
    unknown = [c for c in cats if c not in _SPEC_BY_NAME]
    if unknown or not cats:
        raise DataError(f"unknown synthetic categories {unknown}; choose from {', '.join(SYNTHETIC_CATEGORIES)}")
    return cats


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: str | Path, params: dict | None = None) -> bool:
    """True when root holds a finished synthetic set (with the given parameters, if any)."""
    root = Path(root)
    marker = _read_marker(root)
    if marker is None or (params is not None and marker.get("params") != params):
        return False
    return sum(1 for _ in root.glob("*/*/*/*.png")) == marker.get("n_files")


def generate_synthetic(out: str | Path, seed: int = DEFAULT_SEED, image_size: int = DEFAULT_IMAGE_SIZE,
                       categories: Sequence[str] | None = None, n_train: int = DEFAULT_TRAIN_GOOD,
                       n_test_good: int = DEFAULT_TEST_GOOD,
                       n_test_defective: int = DEFAULT_TEST_DEFECTIVE, overwrite: bool = False) -> Path:
    """Write the synthetic set to ``out`` (MVTec layout) and return ``out``.

    Written into a temporary sibling folder and renamed when done, so ``out`` is never partial.
    An existing complete set with the same parameters is re-used; any other existing, non-empty
    ``out`` raises DataError unless ``overwrite=True``.
    """
    cats = _validate(seed, image_size, categories, {"n_train": n_train, "n_test_good": n_test_good,
                                                    "n_test_defective": n_test_defective})
    params = _params(seed, image_size, cats, n_train, n_test_good, n_test_defective)
    out = Path(out).expanduser()
    if is_complete(out, params):
        return out
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        why = "a synthetic set with other parameters" if _read_marker(out) else "files"
        raise DataError(f"{out} already holds {why}; pass overwrite=True (or --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        if not _writer_alive(stale):  # left by an interrupted run, not one still writing
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        n_files, rows = _write(tmp, seed, image_size, cats, n_train, n_test_good, n_test_defective)
        meta = dict(params, note="SYNTHETIC data, not MVTec AD", n_files=n_files,
                    defects={c: list(_SPEC_BY_NAME[c].defects) for c in cats},
                    grayscale=[c for c in cats if _SPEC_BY_NAME[c].grayscale])
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        (tmp / "README.md").write_text(_README.format(**params))
        with open(tmp / "defects.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["category", "defect_type", "file", "severity", "mask_pixels"])
            writer.writerows(rows)
        (tmp / MARKER_NAME).write_text(json.dumps({"params": params, "n_files": n_files}) + "\n")
        if is_complete(out, params):  # another process finished the same set meanwhile
            return out
        if out.exists():
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:
            if is_complete(out, params):
                return out
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _writer_alive(partial: Path) -> bool:
    """Whether the process named in a '.<name>.partial-<pid>-<tag>' folder is still running."""
    try:
        pid = int(partial.name.rsplit(".partial-", 1)[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _write(tmp, seed, size, cats, n_train, n_test_good, n_test_defective):
    n_files, rows = 0, []
    for cat, split, folder, index, defect, sev in _split_plan(cats, n_train, n_test_good,
                                                              n_test_defective):
        img, mask = draw_sample(cat, seed, split, index, size, defect, sev)
        dest = tmp / cat / split / folder
        dest.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(dest / f"{index:03d}.png")
        n_files += 1
        if defect is not None:
            gt = tmp / cat / "ground_truth" / folder
            gt.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask * 255).save(gt / f"{index:03d}_mask.png")
            n_files += 1
            rows.append([cat, defect, f"{cat}/test/{defect}/{index:03d}.png", round(sev, 4),
                         int(mask.sum())])
    return n_files, rows


def default_data_root(seed: int = DEFAULT_SEED, image_size: int = DEFAULT_IMAGE_SIZE) -> Path:
    """The cached default synthetic set under data_dir(), generated when missing or incomplete."""
    root = data_dir() / f"synthetic-v{GENERATOR_VERSION}-seed{seed}-{image_size}px"
    params = _params(seed, image_size, SYNTHETIC_CATEGORIES, DEFAULT_TRAIN_GOOD, DEFAULT_TEST_GOOD,
                     DEFAULT_TEST_DEFECTIVE)
    if is_complete(root, params):
        return root
    return generate_synthetic(root, seed=seed, image_size=image_size,
                              categories=SYNTHETIC_CATEGORIES, n_train=DEFAULT_TRAIN_GOOD,
                              n_test_good=DEFAULT_TEST_GOOD, n_test_defective=DEFAULT_TEST_DEFECTIVE,
                              overwrite=True)


# --------------------------------------------------------------------------------------------------
# picture


def plot_overview(root: str | Path, categories: Sequence[str] | None = None, example: int = -1,
                  masks: str = "outline", panel_inches: float = 1.3):
    """A matplotlib Figure: one row per category, a good image then one image per defect type.

    masks: "outline" draws each mask's outline in red over its image; "beside" shows the image
    untouched with its mask (white) to its right, so thin scratches stay visible.
    ``example`` picks which image of each folder (-1 = the last, i.e. the most severe in the
    synthetic set). Works on any MVTec-layout root (real MVTec AD too).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .data import _image_files, _visible_dirs, available_categories

    if masks not in ("outline", "beside"):
        raise DataError(f"masks must be 'outline' or 'beside'; got {masks!r}")
    root = Path(root)
    cats = list(categories) if categories is not None else available_categories(root)
    if not cats:
        raise DataError(f"no categories to draw under {root}")
    rows = []
    for cat in cats:
        test = root / cat / "test"
        defects = [d.name for d in _visible_dirs(test) if d.name != "good"]
        rows.append((cat, ["good", *defects]))
    n_cols = max(len(r[1]) for r in rows)
    width = panel_inches * n_cols * (2 if masks == "beside" else 1)
    fig = Figure(figsize=(width, panel_inches * len(rows) + 0.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (cat, folders) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            files = _image_files(root / cat / "test" / folders[c]) if c < len(folders) else []
            if not files:
                ax.set_axis_off()
                continue
            path = files[example] if -len(files) <= example < len(files) else files[-1]
            img = np.asarray(Image.open(path).convert("RGB"))
            mask_path = root / cat / "ground_truth" / folders[c] / f"{path.stem}_mask.png"
            mask = np.zeros(img.shape[:2], dtype=bool)
            if mask_path.is_file():
                mask = np.asarray(Image.open(mask_path).convert("L").resize(
                    (img.shape[1], img.shape[0]), Image.Resampling.NEAREST)) > 127
            if masks == "beside":
                gap = np.full((img.shape[0], max(2, img.shape[1] // 32), 3), 255, dtype=np.uint8)
                shown = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1)
                ax.imshow(np.concatenate([img, gap, shown], axis=1))
            else:
                ax.imshow(img)
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors="red", linewidths=0.7)
            ax.set_title(folders[c], fontsize=7, pad=2)
            if c == 0:
                ax.set_ylabel(cat, fontsize=8)
    how = "mask outlined in red" if masks == "outline" else "mask to the right"
    fig.suptitle(f"{root.name}: a good image and one per defect type ({how})", fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.3 / (panel_inches * len(rows) + 0.3)))
    return fig
