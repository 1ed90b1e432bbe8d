"""The synthetic set's defects: each changes a copy of the scene in place and returns the pixels it
changed. Severity in [0, 1] scales size and contrast: near 0 small and faint, near 1 large and obvious."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from maskad_core.data.synthetic.drawing import _blob, _segments_distance


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
