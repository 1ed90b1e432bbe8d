"""``python -m bench.records.resize_rule``: how much of each KolektorSDD crack survives each ``non_square``
rule (maskad_core/data/geometry.py) at the study's image sizes; writes bench/results/resize_rule.{json,md}.

Geometry statistics of the test split's crack masks, not a detection score: no model is trained and
no image is scored. Per crack mask and per (size, rule):

- ``mask_px``: pixels of the mask the loader returns (any coverage marks a pixel defective);
- ``full_px``: output pixels the crack covers entirely (computed from the exact pixel footprints);
- ``area_px``: the crack's area in output pixels (its pixels times the two scale factors);
- ``min_width_px``: the minimum caliper (Feret) width of the mask's largest connected component,
  in output pixels: how thin the crack is after the image is fitted to the square.

Beside them, label-free: the share of each image that is padding under "pad" (from the image sizes
of every image, train and test). MVTec AD's bottle masks (square images) are measured the same way
for completeness: both rules must give the same numbers there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull

from maskad_core.data.geometry import NON_SQUARE_RULES, placement, resize_mask
from maskad_core.data.mvtec import MVTecAD

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
DEFINITIONS = {
    "mask_px": "pixels of the mask the loader returns (any coverage marks a pixel defective)",
    "full_px": "output pixels the crack covers entirely (exact pixel footprints)",
    "area_px": "the crack's area in output pixels (its pixels times the two scale factors)",
    "min_width_px": "minimum caliper (Feret) width of the mask's largest connected component, "
                    "in output pixels",
    "padding": "share of the square that is padding, from the sizes of every image (train and "
               "test; no labels)",
}
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.records.resize_rule", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED,
                        help="root holding kolektor_sdd and mvtec_ad (default: %(default)s)")
    parser.add_argument("--sizes", default="64,128,224", help="image sides, comma-separated")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="folder for the results")
    return parser


def overlaps(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): length (input pixels) of output pixel i's footprint over input pixel j."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    j = np.arange(n_in)[None, :]
    return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)


def hull_corners(component: np.ndarray) -> np.ndarray:
    """(k, 2) x, y of the convex hull of the component's pixel squares (their corners)."""
    ys, xs = np.nonzero(component)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    corners = np.unique(corners, axis=0).astype(np.float64)
    return corners[ConvexHull(corners).vertices]


def min_width(points: np.ndarray) -> float:
    """Minimum caliper width of a convex polygon (its vertices in order): over its edges, the
    largest distance of a vertex from the edge's line, smallest over edges."""
    edges = np.roll(points, -1, axis=0) - points
    normals = np.stack([-edges[:, 1], edges[:, 0]], 1) / np.linalg.norm(edges, axis=1)[:, None]
    spans = (points @ normals.T) - np.einsum("ij,ij->i", points, normals)[None, :]
    return float(np.abs(spans).max(axis=0).min())


def crack_geometry(mask: np.ndarray, size: int, rule: str, hull: np.ndarray) -> dict:
    """The statistics of one 0/1 mask (its image the mask's size) at ``size`` under ``rule``."""
    height, width = mask.shape
    place = placement((width, height), size, rule)
    sx, sy = place.width / width, place.height / height
    coverage = overlaps(height, place.height) @ mask @ overlaps(width, place.width).T * (sx * sy)
    inner = resize_mask(Image.fromarray(mask.astype(np.uint8) * 255), size, rule)[0].numpy() > 0
    inner = inner[place.top:place.top + place.height, place.left:place.left + place.width]
    full, touched = coverage >= 1 - 1e-6, coverage > 1e-9
    # the loader's mask holds every pixel the crack covers and only pixels it touches
    assert not (inner & ~touched).any() and not (full & ~inner).any(), (size, rule)
    return {"mask_px": int(inner.sum()), "full_px": int(full.sum()),
            "area_px": round(float(mask.sum() * sx * sy), 4),
            "min_width_px": round(min_width(hull * np.array([sx, sy])), 4)}


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def measure_masks(paths: list[Path], sizes: list[int]) -> list[dict]:
    rows = []
    for path in paths:
        mask = (np.asarray(Image.open(path).convert("L")) > 127).astype(np.float64)
        hull = hull_corners(largest_component(mask > 0))
        for size in sizes:
            for rule in NON_SQUARE_RULES:
                rows.append({"mask": f"{path.parent.name}/{path.name}", "size": size, "rule": rule,
                             "components": int(ndimage.label(mask > 0)[1]),
                             **crack_geometry(mask, size, rule, hull)})
    return rows


def summarise(rows: list[dict], sizes: list[int]) -> dict:
    """{size: {rule: aggregates over the masks}}."""
    out: dict = {}
    for size in sizes:
        for rule in NON_SQUARE_RULES:
            sel = [r for r in rows if r["size"] == size and r["rule"] == rule]
            if not sel:
                continue
            mask_px = np.array([r["mask_px"] for r in sel])
            full = np.array([r["full_px"] for r in sel])
            width = np.array([r["min_width_px"] for r in sel])
            out.setdefault(str(size), {})[rule] = {
                "masks": len(sel), "mask_px_total": int(mask_px.sum()),
                "mask_px_median": float(np.median(mask_px)), "mask_px_min": int(mask_px.min()),
                "full_px_median": float(np.median(full)),
                "area_px_median": float(np.median([r["area_px"] for r in sel])),
                "min_width_px_median": float(np.median(width)),
                "min_width_px_min": float(width.min()),
                "share_width_at_least_1px": float((width >= 1).mean()),
                "share_keeping_a_full_px": float((full >= 1).mean())}
    return out


def padding_shares(paths: list[Path], sizes: list[int]) -> dict:
    """{size: {rule: mean, min, max share of the canvas that is padding}} over the image sizes."""
    shapes = [Image.open(p).size for p in paths]
    out: dict = {}
    for size in sizes:
        for rule in NON_SQUARE_RULES:
            shares = np.array([placement(s, size, rule).padding_fraction for s in shapes])
            out.setdefault(str(size), {})[rule] = {"mean": float(shares.mean()),
                                                   "min": float(shares.min()),
                                                   "max": float(shares.max())}
    return out


def measure_category(root: Path, category: str, sizes: list[int]) -> dict:
    test = MVTecAD(root, categories=[category], split="test", image_size=sizes[0])
    train = MVTecAD(root, categories=[category], split="train", image_size=sizes[0])
    masks = [s.mask_path for s in test.samples if s.mask_path is not None]
    images = [s.path for s in train.samples + test.samples]
    shapes = sorted({Image.open(p).size for p in images})
    rows = measure_masks(masks, sizes)
    return {"category": category, "images": len(images), "masks": len(masks),
            "image_sizes_wxh": {"widths": sorted({w for w, _ in shapes}),
                                "heights": [min(h for _, h in shapes), max(h for _, h in shapes)]},
            "summary": summarise(rows, sizes), "padding": padding_shares(images, sizes),
            "per_mask": rows}


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    name = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                 if line.startswith("Model name")), "unknown")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": name, "cores": cores, "python": sys.version.split()[0]}


def markdown(result: dict) -> str:
    lines = ["# How much of a crack survives each non_square rule",
             "",
             f"`python -m bench.records.resize_rule` on {result['date']}, {result['machine']['cpu']} "
             f"({result['machine']['cores']} cores); sizes {result['settings']['sizes']}.",
             "Geometry statistics of the test masks, not a detection score (no model is "
             "trained, no image scored):", "",
             *[f"- {key}: {text}" for key, text in result["settings"]["definitions"].items()],
             ""]
    for data in result["data"]:
        if not data["summary"]:
            pads = ", ".join(f"{size} px {rules['pad']['mean']:.3f}"
                             for size, rules in data["padding"].items())
            lines += [f"## {data['category']}: {data['images']} images, no masks", "",
                      f"Padding share under pad: {pads}.", ""]
            continue
        lines += [f"## {data['category']}: {data['masks']} masks, {data['images']} images "
                  f"(widths {data['image_sizes_wxh']['widths']}, heights "
                  f"{data['image_sizes_wxh']['heights'][0]} to {data['image_sizes_wxh']['heights'][1]})",
                  "",
                  "| size | rule | mask px: total | median | min | full px: median | min width px: "
                  "median | min | width >= 1 px | keeps a full px | padding: mean share |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for size, rules in data["summary"].items():
            for rule, s in rules.items():
                pad = data["padding"][size][rule]["mean"]
                lines.append(f"| {size} | {rule} | {s['mask_px_total']} | {s['mask_px_median']:g} | "
                             f"{s['mask_px_min']} | {s['full_px_median']:g} | "
                             f"{s['min_width_px_median']:.2f} | {s['min_width_px_min']:.2f} | "
                             f"{s['share_width_at_least_1px']:.2f} | "
                             f"{s['share_keeping_a_full_px']:.2f} | {pad:.3f} |")
        lines += ["", comparison(data), ""]
    return "\n".join(lines)


def comparison(data: dict) -> str:
    """One line per size: squash against pad, from the numbers."""
    parts = []
    for size, rules in data["summary"].items():
        squash, pad = rules["squash"], rules["pad"]
        if squash == pad:
            parts.append(f"- {size} px: the rules give identical numbers")
            continue
        ratio = squash["mask_px_total"] / max(pad["mask_px_total"], 1)
        parts.append(f"- {size} px: squash keeps {ratio:.2f}x the mask pixels of pad, median minimum "
                     f"width {squash['min_width_px_median']:.2f} vs {pad['min_width_px_median']:.2f} "
                     f"px, a full pixel in {squash['share_keeping_a_full_px']:.0%} vs "
                     f"{pad['share_keeping_a_full_px']:.0%} of masks; pad leaves "
                     f"{data['padding'][size]['pad']['mean']:.0%} of the square as padding")
    return "\n".join(parts)


def dump(result: dict) -> str:
    """The result as indented JSON with each per-mask row on one line."""
    copy = json.loads(json.dumps(result))
    bodies = {}
    for index, data in enumerate(copy["data"]):
        bodies[f"@per_mask_{index}@"] = ",\n  ".join(json.dumps(r) for r in data["per_mask"])
        data["per_mask"] = f"@per_mask_{index}@"
    text = json.dumps(copy, indent=1)
    for key, body in bodies.items():
        text = text.replace(f'"{key}"', f"[\n  {body}\n ]" if body else "[]")
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    start = time.perf_counter()
    data = []
    for root, category in ((args.data, "kolektor_sdd"), (args.data / "mvtec_ad", "bottle"),
                           (args.data / "mvtec_ad", "screw")):
        if (root / category).is_dir():
            data.append(measure_category(root, category, sizes))
        else:
            print(f"skipped {category}: {root / category} not found", file=sys.stderr)
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine(),
              "settings": {"sizes": sizes, "rules": list(NON_SQUARE_RULES),
                           "data": [f"{d['category']}: {d['masks']} test masks, {d['images']} "
                                    f"images" for d in data],
                           "seconds": round(time.perf_counter() - start, 1),
                           "definitions": DEFINITIONS},
              "rules": {"squash": "resize to size x size, ignoring the aspect ratio",
                        "pad": "longer side to size keeping the aspect ratio, centred, the rest "
                               "filled with the resized image's mean colour; mask padding 0"},
              "data": data}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "resize_rule.json").write_text(dump(result))
    text = markdown(result)
    (args.out / "resize_rule.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
