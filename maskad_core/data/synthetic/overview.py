"""A picture of a data set in MVTec AD's layout: a good image and one per defect type per category."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from maskad_core.data.mvtec import DataError


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

    from maskad_core.data.mvtec import _image_files, _visible_dirs, available_categories

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
            _draw_panel(ax, path, root / cat / "ground_truth" / folders[c], masks)
            ax.set_title(folders[c], fontsize=7, pad=2)
            if c == 0:
                ax.set_ylabel(cat, fontsize=8)
    how = "mask outlined in red" if masks == "outline" else "mask to the right"
    fig.suptitle(f"{root.name}: a good image and one per defect type ({how})", fontsize=8)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.3 / (panel_inches * len(rows) + 0.3)))
    return fig


def _draw_panel(ax, path: Path, ground_truth: Path, masks: str) -> None:
    """One test image with its mask outlined in red, or shown beside it."""
    img = np.asarray(Image.open(path).convert("RGB"))
    mask_path = ground_truth / f"{path.stem}_mask.png"
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
