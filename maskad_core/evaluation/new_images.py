"""Scoring new images with a finished run: ``scores.csv`` and a heat map per image.

The run's saved map statistics are used (``run_record``), so its training images need not be on
disk. Every readable image is scored; an unreadable one is listed with its reason in
``skipped.csv`` and the result. The output is assembled in a temporary folder beside ``out`` and
moved into place only when complete, so ``out`` never mixes a new scoring with an older one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from maskad_core import scoring
from maskad_core.data.mvtec import DataError, _is_sample_file, read_image
from maskad_core.evaluation.evaluate import reconstruct_and_map
from maskad_core.evaluation.run_record import require_finished, run_statistics
from maskad_core.training.runs import Run, load_run, write_csv
from maskad_core.training.runtime import select_device
from maskad_core.training.splits import image_options
from maskad_core.training.threads import threads_for

SCORES_CSV = "scores.csv"
SKIPPED_CSV = "skipped.csv"


@dataclass
class ScoredImages:
    """One row per scored image (``scores``), the images that could not be read with the reason
    (``skipped``: path, reason), and the note "partial: epoch k of n" for an unfinished run."""

    scores: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""


def find_images(inputs) -> list[Path]:
    """Image files named, or found (recursively, sorted) in folders named; masks and hidden files skipped."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if _is_sample_file(p)))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such image or folder: {path}")
    if not found:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return found


def _is_previous_output(folder: Path) -> bool:
    names = [p.name for p in folder.iterdir()]
    return SCORES_CSV in names and all(n.endswith((".png", ".csv")) for n in names)


def check_output(out: str | Path) -> Path:
    """``out`` as a Path, after checking that scoring can replace it: a new folder, an empty one or
    a previous ``maskad score`` output (scores.csv and heat maps), in a writable parent."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file; name a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_previous_output(out):
        example = next(p.name for p in out.iterdir())
        raise ValueError(f"--out {out} holds files that are not a previous scoring (e.g. {example}); "
                         "name a new or empty folder")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create {parent} ({error.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder {parent} is not writable; name another")
    return out


def _read_all(paths: list[Path], image_size: int, **read_options):
    """(index in ``paths``, path, image) of every readable image, and (path, reason) of the rest."""
    readable, skipped = [], []
    for index, path in enumerate(paths):
        try:
            readable.append((index, path, read_image(path, image_size, **read_options)))
        except (DataError, OSError, ValueError) as error:
            skipped.append((str(path), " ".join(str(error).split()) or type(error).__name__))
    return readable, skipped


def _categories_check(statistics, category: str | None) -> str | None:
    if statistics is None:
        return category
    known = statistics.categories
    if category is None and len(known) > 1:
        raise ValueError(f"this run standardises its maps per category: name the images' "
                         f"category with --category (one of {', '.join(known)})")
    category = category if category is not None else known[0]
    if category not in known:
        raise ValueError(f"category {category!r} is not one the run was trained on "
                         f"({', '.join(known)})")
    return category


def score_images(run, inputs, out: str | Path, *, category: str | None = None, device=None,
                 heatmaps: bool = True, partial: bool = False, quiet: bool = True) -> ScoredImages:
    """Score new images with a run's model: writes ``out/scores.csv`` (every reduction and eq. 1)
    and, per image, ``out/<index>_<name>.png`` (image, reconstruction, anomaly map). When the run's
    maps are standardised per pixel, the images are measured against ``category``'s statistics
    (needed when the run was trained on more than one category)."""
    run = run if isinstance(run, Run) else load_run(run)
    note = require_finished(run, partial)
    out = check_output(out)
    paths = find_images(inputs)
    config = run.config
    device = torch.device(device) if device is not None else select_device(config.device)
    # one image: one thread, never slower than one (bench/results/threads.md)
    with threads_for("score-one" if len(paths) <= 1 else "score-batch", device=device):
        return _score_and_write(run, config, paths, out, category, device, heatmaps, note)


def _score_and_write(run, config, paths, out, category, device, heatmaps, note) -> ScoredImages:
    model = run.load_model(device)
    statistics, _ = run_statistics(run, config, model, device, final_weights=not note)
    category = _categories_check(statistics, category)
    readable, skipped = _read_all(paths, config.image_size, **image_options(config))
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        rows = _score_batches(model, config, readable, statistics, category, device,
                              (staging, out) if heatmaps else None, note)
        frame = pd.DataFrame(rows, columns=["path", *(f"score_{r}" for r in scoring.REDUCTIONS),
                                            "score_eq1", *(["heatmap"] if heatmaps else [])])
        write_csv(staging / SCORES_CSV, frame)
        if skipped:
            write_csv(staging / SKIPPED_CSV, pd.DataFrame(skipped, columns=["path", "reason"]))
        _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ScoredImages(frame, skipped, note)


@torch.no_grad()
def _score_batches(model, config, readable, statistics, category, device,
                   heatmap_folders: tuple[Path, Path] | None, note: str) -> list[dict]:
    """Rows of scores; heat maps written into the first folder, named as in the second (final)."""
    rows = []
    for start in range(0, len(readable), config.batch_size):
        chunk = readable[start:start + config.batch_size]
        images = torch.stack([image for _, _, image in chunk])
        recon, maps = reconstruct_and_map(model, config, images, [i for i, _, _ in chunk], device)
        if statistics is not None:
            maps = statistics.standardize(maps, [category] * len(chunk))
        scores = {f"score_{r}": scoring.image_score(maps, r, config.topk_fraction)
                  for r in scoring.REDUCTIONS}
        scores["score_eq1"] = scoring.eq1_score(images, recon)
        for row, (index, path, image) in enumerate(chunk):
            record = {"path": str(path), **{k: float(v[row]) for k, v in scores.items()}}
            if heatmap_folders is not None:
                name = f"{index:04d}_{path.stem}.png"
                picture = heatmap_folders[0] / name
                title = f"{path.name}  score={record[f'score_{config.score_reduction}']:.5f}"
                save_heatmap(picture, image, recon[row], maps[row],
                             title=f"{title}  ({note})" if note else title)
                record["heatmap"] = str(heatmap_folders[1] / name)
            rows.append(record)
    return rows


def _replace_folder(new: Path, out: Path) -> None:
    """Move the complete ``new`` folder to ``out``; an older ``out`` goes only once it is replaced."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old / out.name, out)  # put the old output back, whole
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_heatmap(path: Path, image: torch.Tensor, recon: torch.Tensor, amap: torch.Tensor,
                 title: str = "") -> None:
    from matplotlib.figure import Figure  # no pyplot: leaves a notebook's backend alone

    figure = Figure(figsize=(9, 3.3))
    axes = figure.subplots(1, 3)
    axes[0].imshow(image.permute(1, 2, 0).numpy())
    axes[0].set_title("image")
    axes[1].imshow(recon.permute(1, 2, 0).numpy())
    axes[1].set_title("reconstruction")
    shown = axes[2].imshow(amap.numpy(), cmap="inferno")
    axes[2].set_title("anomaly map")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
