"""Drawing helpers of the synthetic set: a scene (object layer over a background) and the signed
distance fields, noise and shading its textures, objects and defects are drawn with.

Coordinates: x, y in [-1, 1], y pointing down; one pixel = 2 / size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


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
