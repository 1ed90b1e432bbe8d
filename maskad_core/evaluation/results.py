"""The one evaluation path: per-image anomaly maps of a test split in, the per-image frame and the
per-category metrics out.

The model (``evaluate.evaluate_model``), the training-free detectors (``baselines.evaluate_baseline``)
and the recipe benchmark's score grid all call :func:`score_split`, so a table can hold any of them.

Metric names, used everywhere (metrics.json, tables, notebooks): ``image_auroc_<reduction>`` of the
map, ``image_auroc_eq1`` (the paper's eq. 1 score; NaN with a note for a detector that has no
reconstruction), ``pixel_auroc``, ``pixel_aupro`` (FPR limit 0.3), with ``image_note`` /
``pixel_note`` saying why a value is NaN.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from maskad_core import metrics as metric_fns
from maskad_core import scoring

SCORE_NAMES = (*scoring.REDUCTIONS, "eq1")  # the map's reductions, and the paper's eq. 1
IMAGE_METRICS = tuple(f"image_auroc_{r}" for r in SCORE_NAMES)
PIXEL_METRICS = ("pixel_auroc", "pixel_aupro")
METRIC_NAMES = IMAGE_METRICS + PIXEL_METRICS
FRAME_COLUMNS = ("path", "category", "defect_type", "label", *(f"score_{r}" for r in SCORE_NAMES))
NO_RECONSTRUCTION = "no reconstruction: eq. 1 is undefined for this detector"


@dataclass
class SplitScores:
    """What scoring a test split gives: one row per image (``frame``, columns FRAME_COLUMNS), the
    metrics of each category and their mean over categories."""

    frame: pd.DataFrame
    per_category: dict[str, dict]
    mean: dict

    @property
    def test_counts(self) -> dict[str, dict[str, int]]:
        return {c: {"good": row["n_good"], "defective": row["n_defective"]}
                for c, row in self.per_category.items()}


def score_split(samples: Sequence, maps: torch.Tensor, masks: torch.Tensor | None = None, *,
                eq1: np.ndarray | None = None, headline: str = "max", topk_fraction: float = 0.01,
                categories: Sequence[str] | None = None, detail: bool = True) -> SplitScores:
    """Score N test images from their (N, H, W) anomaly maps.

    samples: the N ``data.Sample`` records (path, category, defect_type, label, has_mask);
    masks: their (N, H, W) ground truth (any dtype; None: no pixel metrics); eq1: the paper's eq. 1
    score per image, or None for a detector without a reconstruction; headline: the reduction whose
    interval is computed beside eq. 1's; categories: the rows in order (default: as they occur);
    detail: False skips the bootstrap intervals and AUPRO (the recipe grid's many variants).
    """
    if maps.ndim != 3 or maps.shape[0] != len(samples):
        raise ValueError(f"maps must be (N, H, W) for the {len(samples)} samples, got "
                         f"{tuple(maps.shape)}")
    frame = image_frame(samples, maps, eq1, topk_fraction)
    has_mask = np.array([bool(s.has_mask) for s in samples], dtype=bool)
    per_category = {}
    for category in categories or list(dict.fromkeys(frame.category)):
        in_category = (frame.category == category).to_numpy()
        # a defective image whose mask is missing has an all-zero one: keep it out of pixel metrics
        pixels = torch.from_numpy(in_category & has_mask)
        pixel = (maps[pixels].float(), masks[pixels].bool()) \
            if masks is not None and bool(pixels.any()) else (None, None)
        per_category[category] = category_metrics(frame[in_category], *pixel, category,
                                                  headline=headline, detail=detail)
    return SplitScores(frame, per_category, mean_row(per_category))


def image_frame(samples: Sequence, maps: torch.Tensor, eq1: np.ndarray | None,
                topk_fraction: float) -> pd.DataFrame:
    """One row per image: its record and every image score (score_eq1 NaN without eq. 1)."""
    scores = {f"score_{r}": scoring.image_score(maps.float(), r, topk_fraction).numpy()
              for r in scoring.REDUCTIONS}
    scores["score_eq1"] = (np.full(len(samples), np.nan) if eq1 is None
                           else np.asarray(eq1, dtype=float))
    return pd.DataFrame({
        "path": [str(s.path) for s in samples],
        "category": [s.category for s in samples],
        "defect_type": [s.defect_type for s in samples],
        "label": [int(s.label) for s in samples],
        **scores,
    }, columns=list(FRAME_COLUMNS))


def _metric(function, *args) -> tuple[float, str]:
    """(value, note): the note holds the warning text when the metric is undefined (NaN)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", metric_fns.UndefinedMetricWarning)
        value = float(function(*args))
    note = "; ".join(str(w.message) for w in caught
                     if issubclass(w.category, metric_fns.UndefinedMetricWarning))
    return value, note


def category_metrics(rows: pd.DataFrame, maps: torch.Tensor | None, masks: torch.Tensor | None,
                     category: str, headline: str = "mean", detail: bool = True) -> dict:
    """Image AUROC per score (each reduction and eq. 1) with a 95% bootstrap interval over test
    images for the ``headline`` score and eq. 1, pixel AUROC and AUPRO (NaN with a note where
    undefined)."""
    labels = rows.label.to_numpy()
    result: dict = {"n_test": int(len(rows)), "n_good": int((labels == 0).sum()),
                    "n_defective": int((labels == 1).sum())}
    notes = []
    without_eq1 = rows["score_eq1"].isna().all()
    for name in SCORE_NAMES:
        if name == "eq1" and without_eq1:
            result["image_auroc_eq1"] = float("nan")
            notes.append(NO_RECONSTRUCTION)
            continue
        value, note = _metric(metric_fns.image_auroc, labels, rows[f"score_{name}"].to_numpy())
        result[f"image_auroc_{name}"] = value
        if note and note not in notes:
            notes.append(note)
        if detail and name in (headline, "eq1"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", metric_fns.UndefinedMetricWarning)  # noted above
                result[f"image_auroc_{name}_ci"] = list(metric_fns.auroc_interval(
                    labels, rows[f"score_{name}"].to_numpy()))
    result["image_note"] = "; ".join(notes)
    result.update(_pixel_metrics(maps, masks, category, detail))
    return result


def _pixel_metrics(maps, masks, category: str, detail: bool) -> dict:
    if maps is None:
        return {"pixel_auroc": float("nan"), "pixel_aupro": float("nan"),
                "pixel_note": f"no ground-truth masks for category {category!r}"}
    auroc, note_auroc = _metric(metric_fns.pixel_auroc, masks.numpy(), maps.numpy())
    aupro, note_aupro = (_metric(metric_fns.aupro, masks.numpy(), maps.numpy()) if detail
                         else (float("nan"), "AUPRO not computed"))
    return {"pixel_auroc": auroc, "pixel_aupro": aupro,
            "pixel_note": "; ".join(dict.fromkeys(n for n in (note_auroc, note_aupro) if n))}


def mean_row(per_category: dict[str, dict]) -> dict:
    """The mean over categories of each metric, ignoring NaN; the note says what was left out."""
    row: dict = {key: sum(r[key] for r in per_category.values())
                 for key in ("n_test", "n_good", "n_defective")}
    for kind, names in (("image", IMAGE_METRICS), ("pixel", PIXEL_METRICS)):
        left_out = set()
        for name in names:
            values = [r[name] for r in per_category.values() if name in r]
            finite = [v for v in values if not math.isnan(v)]
            if name != "image_auroc_eq1" or finite:  # eq. 1 absent everywhere is no "left out"
                left_out |= {c for c, r in per_category.items() if math.isnan(r.get(name, math.nan))}
            row[name] = float(np.mean(finite)) if finite else float("nan")
        row[f"{kind}_note"] = (f"mean over {len(per_category) - len(left_out)} of {len(per_category)} "
                               f"categories; undefined for {', '.join(sorted(left_out))}"
                               if left_out else "")
    return row


def metrics_table(metrics: dict) -> pd.DataFrame:
    """Per-category rows plus a ``mean`` row, columns n_test .. pixel_note."""
    rows = {**metrics["per_category"], "mean": metrics["mean"]}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "category"
    columns = ["n_test", "n_good", "n_defective", *METRIC_NAMES,
               *(f"{name}_ci" for name in IMAGE_METRICS), "image_note", "pixel_note"]
    return frame[[c for c in columns if c in frame.columns]]


def format_table(table: pd.DataFrame) -> str:
    """The table as text: metrics to 3 decimals, notes below it."""
    shown = table[[c for c in table.columns if not c.endswith(("_note", "_ci"))]].copy()
    for column in METRIC_NAMES:
        if column in shown:
            shown[column] = shown[column].map(lambda v: "nan" if math.isnan(v) else f"{v:.3f}")
    lines = [shown.to_string()]
    for category, row in table.iterrows():
        for column in ("image_note", "pixel_note"):
            if column in table and row[column]:
                lines.append(f"  {category}: {row[column]}")
    return "\n".join(lines)
