"""The synthetic set's objects: nut, washer, pill, screw and cap on a background. Each returns the
scene and the parameters it drew, so that the "bent" defect can redraw it with one change."""

from __future__ import annotations

import numpy as np

from maskad_core.data.synthetic.drawing import (
    Scene,
    _coverage,
    _grid,
    _light,
    _noise,
    _rotate,
    _shade,
)


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
