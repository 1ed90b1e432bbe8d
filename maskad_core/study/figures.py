"""Figures the book shows, built here so that the notebooks keep to prose and one call per figure.

Sizes and fonts suit the book's content column (about 680 CSS px): figures are 9.5 inches wide at
150 dpi (1425 px, shown scaled to the column), fonts 11 pt; legends sit outside the data; categories get one
distinguishable colour each (tab20, up to 20); maps carry colour bars.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from maskad_core.study import compute_curve, paper
from maskad_core.study.seeds import MEAN

WIDTH = 9.5  # inches: 1425 px at DPI
DPI = 150  # the book's test asks at least 100 dpi of every figure (panel titles were 7 px at 80)
STYLE = {"figure.figsize": (WIDTH, 4.0), "font.size": 11, "axes.titlesize": 11,
         "legend.fontsize": 10, "figure.dpi": DPI, "savefig.dpi": DPI}


def category_colors(names: Sequence[str]) -> dict[str, tuple]:
    """One colour per category, distinguishable up to 20 (tab10 for up to 10, tab20 beyond)."""
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def table1_figure(h, *, comparable: bool, title: str):
    """Grouped bars per category: the default score and eq. 1 (complementary masking), the default
    score with random masking (error bars: one seed standard deviation), the paper's value."""
    rows = [*h.categories, MEAN]
    series = [("ours: default score", h.ours, "tab:blue"), ("ours: eq. 1", h.ours_eq1, "tab:cyan"),
              ("random masking: default score", h.random, "tab:orange")]
    fig, axis = plt.subplots(figsize=(WIDTH, 4.2))
    x, width = np.arange(len(rows)), 0.26
    for i, (label, stats, color) in enumerate(series):
        means = [stats[c].mean if c in stats else np.nan for c in rows]
        stds = [stats[c].std if c in stats else 0 for c in rows]
        axis.bar(x + (i - 1) * width, means, width, yerr=stds, capsize=3, label=label, color=color)
    if comparable:
        printed = paper.table1()["paper"]
        values = [printed.get(c, np.nan) for c in rows[:-1]] + [np.nan]
        axis.scatter(x, values, marker="_", s=900, color="black", zorder=3, label="paper (Table 1)")
    axis.axhline(0.5, color="grey", lw=0.8, ls="--")
    axis.set_xticks(x, rows)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("image AUROC")
    axis.set_title(title)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- helpers for pages


def _rgb(image):
    """(C, H, W) tensor or array in [0, 1] as an (H, W, C) array for imshow."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return np.clip(np.transpose(array, (1, 2, 0)), 0, 1)


def _array(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def closed_form_figure(ks, ratios, frame, fine_ratios, surface, num_patches: int):
    """Left: P(defect entirely visible) against defect size for a few ratios (log scale); right:
    log10 of it over ratio and size, the colour scale anchored at 1e-8 .. 1."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.8))
    colors = category_colors([f"r = {r}" for r in ratios])
    for r in ratios:
        axes[0].semilogy(ks, frame[f"r = {r}"], marker="o", ms=3, label=f"r = {r}",
                         color=colors[f"r = {r}"])
    axes[0].set_xlabel("defect size k (patches)")
    axes[0].set_ylabel("P(defect entirely visible)")
    axes[0].set_title(f"closed form, L = {num_patches} patches")
    axes[0].legend(loc="upper right", frameon=False)
    image = axes[1].imshow(np.log10(np.maximum(surface, 1e-12)), aspect="auto", origin="lower",
                           extent=[ks[0] - 0.5, ks[-1] + 0.5, fine_ratios[0] - 0.025,
                                   fine_ratios[-1] + 0.025], cmap="magma", vmin=-8, vmax=0)
    axes[1].set_xlabel("defect size k (patches)")
    axes[1].set_ylabel("mask ratio r")
    axes[1].set_title("log10 P(defect entirely visible)")
    fig.colorbar(image, ax=axes[1], label="log10 P (from 1e-8 to 1)")
    fig.tight_layout()
    return fig


def _maps_with_one_colorbar(fig, axes, heat, title: str, label: str, *, right: float, height: float):
    """Panels without axes, the title, and ONE colour bar at the right for maps drawn on one scale."""
    for axis in axes:
        axis.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.colorbar(heat, cax=fig.add_axes((right + 0.01, 0.12, 0.015, height)), label=label)
    return fig


def defect_examples_figure(shown, examples, title: str):
    """Per example row: the image with its defect outlined, the visible part under random masking,
    and the raw squared error of both maskings on one colour scale from 0 (one shared colour bar)."""
    rows = len(shown)
    fig, axes = plt.subplots(rows, 4, figsize=(WIDTH, 2.4 * rows + 0.6), squeeze=False)
    vmax = max(float(_array(example[3]).max()) for example in examples.values()) or 1.0
    heat = None
    for row, (index, info) in enumerate(shown.iterrows()):
        image, defect, visible, random_map, complementary_map = examples[index]
        defect = _array(defect)
        axes[row, 0].imshow(_rgb(image))
        axes[row, 0].contour(defect, levels=[0.5], colors="red", linewidths=0.8)
        axes[row, 0].set_title(f"{info['category']}/{info['defect_type']}", fontsize=10)
        axes[row, 1].imshow(_rgb(_array(image) * (0.25 + 0.75 * _array(visible))))
        axes[row, 1].contour(defect, levels=[0.5], colors="red", linewidths=0.8)
        axes[row, 1].set_title(f"{info['defect_visible_fraction']:.0%} of defect visible", fontsize=10)
        heat = axes[row, 2].imshow(_array(random_map), cmap="inferno", vmin=0, vmax=vmax)
        axes[row, 2].set_title("error, random masking", fontsize=10)
        axes[row, 3].imshow(_array(complementary_map), cmap="inferno", vmin=0, vmax=vmax)
        axes[row, 3].set_title("error, complementary", fontsize=10)
    return _maps_with_one_colorbar(fig, axes.ravel(), heat, title, "squared error (shared scale, from 0)",
                                   right=0.9, height=0.72)


def masking_bars_figure(comparison, title: str, ylabel: str):
    """Bars per category (and mean) for the columns of ``comparison`` (one colour per column),
    chance dashed, legend outside the axes."""
    fig, axis = plt.subplots(figsize=(WIDTH, 3.6))
    colors = ["tab:orange", "tab:blue", "tab:green", "tab:purple"]
    comparison.plot.bar(ax=axis, width=0.8, color=colors[:comparison.shape[1]])
    axis.set_ylim(0, 1.05)
    axis.axhline(0.5, color="grey", lw=0.8, ls="--")
    axis.set_ylabel(ylabel)
    axis.set_xlabel("")
    axis.set_title(title)
    axis.tick_params(axis="x", rotation=0)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def image_strip_figure(panels, title: str, *, error=None, error_title: str = "error"):
    """A row of RGB panels [(title, (C,H,W) image), ...] and optionally one error map with its
    colour bar (scale from 0)."""
    count = len(panels) + (error is not None)
    fig, axes = plt.subplots(1, count, figsize=(WIDTH, WIDTH / count + 0.9))
    for axis, (name, image) in zip(axes, panels, strict=False):
        axis.imshow(_rgb(image))
        axis.set_title(name, fontsize=10)
    if error is not None:
        heat = axes[-1].imshow(_array(error), cmap="inferno", vmin=0)
        axes[-1].set_title(error_title, fontsize=10)
        fig.colorbar(heat, ax=axes[-1], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def random_vs_complementary_reconstruction(image, defect, random_recon, complementary_recon,
                                           random_map, complementary_map, title: str):
    """One defective image: input (defect outlined), its reconstruction under random and under
    complementary masking, and the two error maps on ONE colour scale (0 to the larger maximum)
    with one shared colour bar."""
    fig, axes = plt.subplots(1, 5, figsize=(WIDTH, 2.9))
    vmax = max(float(_array(random_map).max()), float(_array(complementary_map).max())) or 1.0
    panels = [("input", image), ("random masking: y", random_recon),
              ("complementary: y", complementary_recon)]
    for axis, (name, picture) in zip(axes, panels, strict=False):
        axis.imshow(_rgb(picture))
        axis.set_title(name, fontsize=10)
    if defect is not None:
        axes[0].contour(_array(defect), levels=[0.5], colors="red", linewidths=0.8)
    heat = axes[3].imshow(_array(random_map), cmap="inferno", vmin=0, vmax=vmax)
    axes[3].set_title("error, random", fontsize=10)
    axes[4].imshow(_array(complementary_map), cmap="inferno", vmin=0, vmax=vmax)
    axes[4].set_title("error, complementary", fontsize=10)
    if defect is not None:
        for axis in axes[3:]:
            axis.contour(_array(defect), levels=[0.5], colors="cyan", linewidths=0.6)
    return _maps_with_one_colorbar(fig, axes, heat, title, "(x - y)², shared", right=0.91, height=0.66)


def loss_components_figure(history, title: str):
    """The loss components over epochs on one axis (total, 1 - SSIM, L1, LPIPS where active) and the
    learning rate beside it."""
    fig, (axis, lr_axis) = plt.subplots(1, 2, figsize=(WIDTH, 3.6),
                                        gridspec_kw={"width_ratios": [2.2, 1]})
    names = {"total": "total (weighted)", "ssim": "1 − SSIM", "l1": "L1", "lpips": "LPIPS"}
    colors = category_colors(list(names))
    for column, label in names.items():
        if column == "lpips" and not (history[column] > 0).any():
            continue
        axis.plot(history["epoch"], history[column], marker="o", ms=3, label=label,
                  color=colors[column])
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss (unweighted components)")
    axis.set_ylim(bottom=0)
    axis.legend(loc="upper right", frameon=False)
    lr_axis.plot(history["epoch"], history["lr"], color="black")
    lr_axis.set_xlabel("epoch")
    lr_axis.set_title("learning rate")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reconstructions_figure(images, titles, stages, outputs, final_maps, standardized=None):
    """Rows: test images; columns: the image, the composite at each training stage, the trained
    model's error map (shared scale from 0) and its z-score map (shared scale), each with a bar."""
    rows = len(titles)
    columns = 2 + len(stages) + (standardized is not None)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, WIDTH / columns * rows + 0.8),
                             squeeze=False)
    error_max = float(_array(final_maps).max()) or 1.0
    heat = zheat = None
    for row in range(rows):
        axes[row, 0].imshow(_rgb(images[row]))
        axes[row, 0].set_title(titles[row], fontsize=9)
        for j, (name, (recon, _maps)) in enumerate(zip(stages, outputs, strict=True)):
            axes[row, 1 + j].imshow(_rgb(recon[row]))
            axes[row, 1 + j].set_title(f"y, {name}", fontsize=9)
        heat = axes[row, 1 + len(stages)].imshow(_array(final_maps[row]), cmap="inferno", vmin=0,
                                                 vmax=error_max)
        axes[row, 1 + len(stages)].set_title("error map", fontsize=9)
        if standardized is not None:
            z_max = float(_array(standardized).max())
            zheat = axes[row, -1].imshow(_array(standardized[row]), cmap="inferno", vmin=0,
                                         vmax=max(z_max, 1.0))
            axes[row, -1].set_title(f"z, max {float(standardized[row].max()):.1f}", fontsize=9)
    for axis in axes.ravel():
        axis.axis("off")
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.colorbar(heat, cax=fig.add_axes((0.81, 0.1, 0.012, 0.8)), label="error (from 0)")
    if zheat is not None:
        fig.colorbar(zheat, cax=fig.add_axes((0.91, 0.1, 0.012, 0.8)), label="z-score (from 0)")
    return fig


def table2_heatmaps(ours, printed, ours_title: str, vmin: float = 0.5, vmax: float = 1.0):
    """Two heat maps (this study, the paper's Table 2) on one colour scale anchored at
    [vmin, vmax] (default: chance to perfect), values written in the cells, empty cells grey."""
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 3.8))
    heat = None
    for axis, grid, title in ((axes[0], ours, ours_title),
                              (axes[1], printed, "paper, Table 2 (MVTec AD, 224 px)")):
        values = grid.to_numpy(dtype=float)
        cmap = plt.get_cmap("viridis").copy()
        cmap.set_bad("0.85")
        heat = axis.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                           aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                axis.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=9,
                          color="white" if value < (vmin + vmax) / 2 else "black")
        axis.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
        axis.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
        axis.set_xlabel("encoder/decoder depth")
        axis.set_ylabel("mask ratio r")
        axis.set_title(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.colorbar(heat, cax=fig.add_axes((0.91, 0.15, 0.015, 0.7)),
                 label=f"mean image AUROC ({vmin:g} to {vmax:g})")
    return fig


def score_histograms_figure(scores, bins, histogram, title: str):
    """Per category: histograms of normal and anomalous test scores and their overlap; the legend
    below the panels."""
    categories = sorted(scores["category"].unique())
    columns = min(4, len(categories))
    rows = -(-len(categories) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 2.3 * rows + 0.9), squeeze=False)
    colors = {"normal": "tab:blue", "anomalous": "tab:orange", "overlap": "0.25"}
    for axis, category in zip(axes.ravel(), categories, strict=False):
        edges, *counts = histogram(scores[scores["category"] == category], bins)
        for kind, count in zip(colors, counts, strict=True):
            axis.bar(edges[:-1], count, width=np.diff(edges), align="edge", color=colors[kind],
                     alpha=1.0 if kind == "overlap" else 0.75)
        axis.set_title(category, fontsize=10)
        axis.tick_params(labelsize=8)
    for axis in axes.ravel()[len(categories):]:
        axis.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in colors]
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles, list(colors), loc="lower center", ncol=3, frameon=False)
    return fig


def roc_figure(curves: dict, title: str):
    """ROC curve per category ({category: (fpr, tpr, auroc)}), one colour each, legend outside."""
    fig, axis = plt.subplots(figsize=(WIDTH, 4.6))
    colors = category_colors(list(curves))
    for category, (fpr, tpr, auroc) in curves.items():
        axis.plot(fpr, tpr, lw=1.4, color=colors[category], label=f"{category} ({auroc:.2f})")
    axis.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                title="category (AUROC)")
    fig.tight_layout()
    return fig


def plateau_figure(plateau, title: str):
    """Spatial spread of the reconstruction over optimiser steps per loss weighting, against the
    images' own spread (dashed)."""
    fig, axis = plt.subplots(figsize=(WIDTH, 3.8))
    labels = list(dict.fromkeys(plateau["loss"]))
    colors = category_colors(labels)
    for label, part in plateau.groupby("loss", sort=False):
        axis.plot(part["step"], part["recon_std"], marker="o", label=label, color=colors[label])
    images = plateau.groupby("step")["image_std"].mean()
    axis.plot(images.index, images.to_numpy(), color="grey", ls="--", label="the images")
    axis.set_xlabel("optimiser step")
    axis.set_ylabel("spatial std of the output")
    axis.set_ylim(bottom=0)
    axis.set_title(title)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def auroc_over_minutes_figure(curves: dict):
    """Mean image AUROC of weight snapshots against training minutes ({label: frame with columns
    minutes, image_auroc}), chance dashed, legend outside."""
    fig, axis = plt.subplots(figsize=(WIDTH, 3.8))
    colors = category_colors(list(curves))
    for label, curve in curves.items():
        axis.plot(curve["minutes"], curve["image_auroc"], marker="o", label=label,
                  color=colors[label])
    axis.axhline(0.5, color="grey", lw=0.8, ls="--")
    axis.set_ylim(0.4, 1.0)
    axis.set_xlabel("training minutes (the recording machine)")
    axis.set_ylabel("mean image AUROC, default score")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def compute_curve_figure(records: dict, *, paper_epochs: int, dpi: int = 150):
    """What each step of compute buys: per category (one panel each), image AUROC of the kept
    snapshots against the images of that category the model has seen (log scale). ``records``:
    {training masking: a ``bench.records.curve`` record}. Solid: default score; dotted: the same
    weights scored with the other masking's test views; thin: eq. 1; grey dash-dot: the best
    training-free floor of the first record (``compute_curve.best_detector``); star: the paper's value at its budget (images seen
    = ``paper_epochs`` x the category's training images), MVTec AD rows only."""
    first = next(iter(records.values()))
    categories = list(first["data"]["categories"])
    split = first["data"]["holdout"]["categories"]
    columns = 2 if len(categories) > 1 else 1
    rows = int(np.ceil(len(categories) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(WIDTH, 3.0 * rows + 0.6), squeeze=False, dpi=dpi)
    styles = {"complementary": "#1f77b4", "random": "#d62728"}
    table1 = paper.table1()["paper"]
    for axis, category in zip(axes.ravel(), categories, strict=False):
        for masking, record in records.items():
            seen = [p["epoch"] * split[category]["train"] for p in record["points"]]
            values = [p["per_category"][category] for p in record["points"]]
            color = styles.get(masking, "black")
            other = "random" if masking == "complementary" else "complementary"
            axis.plot(seen, [v["default"] for v in values], marker="o", ms=3, color=color,
                      label=f"trained {masking}, default score")
            axis.plot(seen, [v.get(f"default_{other}_views") for v in values], ls=":", color=color,
                      label=f"trained {masking}, {other} test views")
            axis.plot(seen, [v["eq1"] for v in values], lw=0.8, color=color, alpha=0.6,
                      label=f"trained {masking}, eq. 1")
        best = compute_curve.best_detector(first, category)
        if best is not None:
            axis.axhline(best[1], color="grey", ls="-.", lw=1.0, label="best training-free floor")
            axis.annotate(best[0], (1.0, best[1]), xycoords=("axes fraction", "data"), ha="right",
                          va="bottom", fontsize=8, color="grey")
        if category in table1.index:
            total = split[category]["train"] + split[category]["held_out"]
            axis.plot([paper_epochs * total], [table1[category]], marker="*", ms=11, color="black",
                      ls="none", label="the paper (Table 1, its budget)")
        axis.axhline(0.5, color="grey", lw=0.6, ls="--")
        axis.set_xscale("log")
        axis.set_ylim(0.0, 1.02)
        axis.set_title(category)
        axis.set_xlabel("images of this category seen in training")
        axis.set_ylabel("image AUROC")
    for axis in axes.ravel()[len(categories):]:
        axis.axis("off")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12 if rows > 1 else 0.2, 1, 1))
    return fig
