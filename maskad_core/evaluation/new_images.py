"""Scoring new images with a finished run: ``scores.csv`` and a heat map per image.

The run's saved map statistics are used (``run_record``), so its training images need not be on
disk. Every readable image is scored, its mask draws seeded by its content; an unreadable one (or a
broken link) is listed with its reason in ``skipped.csv`` and the result. ``out`` is checked
before any work (``outputs``); the output is assembled in a folder beside it and moved into place
only when complete, so ``out`` never mixes a new scoring with an older one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from maskad_core import scoring
from maskad_core.data.geometry import placement, valid_pixels
from maskad_core.data.mvtec import DataError, _is_sample_file, read_image
from maskad_core.evaluation.evaluate import reconstruct_and_map
from maskad_core.evaluation.outputs import (
    check_output_folder,
    is_output_folder,
    make_folder_beside,
    output_lock,
    write_manifest,
)
from maskad_core.evaluation.run_record import require_finished, run_statistics
from maskad_core.training.runs import Run, load_run, write_csv
from maskad_core.training.runtime import select_device, show_progress
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


def find_images(inputs, exclude: Path | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """(image files named, or found recursively and sorted in folders named; masks and hidden
    files skipped, and so are ``exclude`` and every maskad output folder inside the inputs,
    (path, reason) of each broken symbolic link found)."""
    found: list[Path] = []
    broken: list[tuple[str, str]] = []
    skip = exclude.resolve() if exclude is not None else None
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for file in _walk(path, skip):
                if file.is_symlink() and not file.exists():
                    broken.append((str(file), f"broken symbolic link (to {os.readlink(file)})"))
                elif _is_sample_file(file):
                    found.append(file)
        elif path.is_file():
            found.append(path)
        elif path.is_symlink():
            broken.append((str(path), f"broken symbolic link (to {os.readlink(path)})"))
        else:
            raise FileNotFoundError(f"no such image or folder: {path}")
    if not found and not broken:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return found, broken


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    """Files under ``folder``, sorted, not entering ``skip`` or maskad's own output folders (a
    scoring written inside its input folder is not scored as input the next time)."""
    files: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            if (skip is not None and entry.resolve() == skip) or is_output_folder(entry):
                continue
            files.extend(_walk(entry, skip))
        else:
            files.append(entry)
    return files


def check_output(out: str | Path, inputs=()) -> Path:
    """``out`` as a Path, after checking that scoring can replace it (outputs.check_output_folder:
    new, empty or a previous ``maskad score`` output, not an input, not a run folder) in a
    writable parent."""
    out = check_output_folder(out, "score", inputs=inputs)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out}: cannot create {parent} ({error.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder {parent} is not writable; name another")
    return out


def image_key(path: Path) -> str:
    """What an image's mask draws are seeded by: its content (sha256 of the file), so the same
    image scores the same wherever it sits in the input list and whatever it is called."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_image_valid(path: Path, image_size: int, non_square: str = "squash",
                     image_standardization: str = "none") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The image as ``read_image`` gives it, and where it lies on the canvas: a (size, size)
    boolean of its pixels under non_square=pad (None when nothing is padding)."""
    image = read_image(path, image_size, non_square, image_standardization)
    with Image.open(path) as header:  # read_image has decoded it: the size alone is read here
        place = placement(header.size, int(image_size), non_square)
    return image, valid_pixels(place) if place.padded else None


def _read_all(paths: list[Path], image_size: int, **read_options):
    """(content key, path, image, valid-pixel mask or None) of every readable image, and
    (path, reason) of the rest."""
    readable, skipped = [], []
    for path in paths:
        try:
            image, valid = read_image_valid(path, image_size, **read_options)
            readable.append((image_key(path), path, image, valid))
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
    and, per image, ``out/<index>_<name>.png`` (image, reconstruction, anomaly map). Each image's
    mask draws are seeded by its content (``image_key``), so its scores depend on the image alone.
    Under non_square=pad the padding is left out of every score. When the run's maps are
    standardised per pixel, the images are measured against ``category``'s statistics (needed when
    the run was trained on more than one category)."""
    run = run if isinstance(run, Run) else load_run(run)
    note = require_finished(run, partial)
    out = check_output(out, inputs)
    config = run.config
    device = select_device(str(device) if device is not None else config.device)
    paths, broken = find_images(inputs, exclude=out)
    # one image: one thread, never slower than one (bench/results/threads.md)
    threads = threads_for("score-one" if len(paths) <= 1 else "score-batch", device=device)
    with output_lock(out, "score"), threads:
        model = run.load_model(device)
        statistics, _ = run_statistics(run, config, model, device, final_weights=not note)
        category = _categories_check(statistics, category)
        readable, skipped = _read_all(paths, config.image_size, **image_options(config))
        skipped = broken + skipped
        staging = make_folder_beside(out, "partial")
        try:
            rows = _score_batches(model, config, readable, statistics, category, device,
                                  (staging, out) if heatmaps else None, note, quiet)
            frame = pd.DataFrame(rows, columns=["path", *(f"score_{r}" for r in scoring.REDUCTIONS),
                                                "score_eq1", *(["heatmap"] if heatmaps else [])])
            written = [SCORES_CSV, *([SKIPPED_CSV] if skipped else []),
                       *(Path(r["heatmap"]).name for r in rows if heatmaps)]
            write_manifest(staging, "score", written)
            write_csv(staging / SCORES_CSV, frame)
            if skipped:
                write_csv(staging / SKIPPED_CSV, pd.DataFrame(skipped, columns=["path", "reason"]))
            _replace_folder(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ScoredImages(frame, skipped, note)


@torch.no_grad()
def _score_batches(model, config, readable, statistics, category, device,
                   heatmap_folders: tuple[Path, Path] | None, note: str, quiet: bool = True) -> list[dict]:
    """Rows of scores; heat maps written into the first folder, named as in the second (final)."""
    rows = []
    bar = tqdm(total=len(readable), desc="score", unit="image", leave=False,
               disable=not show_progress(quiet), dynamic_ncols=True)
    for start in range(0, len(readable), config.batch_size):
        chunk = readable[start:start + config.batch_size]
        images = torch.stack([image for _, _, image, _ in chunk])
        recon, maps = reconstruct_and_map(model, config, images, [key for key, _, _, _ in chunk],
                                          device, stream="score")
        if statistics is not None:
            maps = statistics.standardize(maps, [category] * len(chunk))
        valid = torch.stack([v if v is not None else torch.ones(maps.shape[1:], dtype=torch.bool)
                             for _, _, _, v in chunk])
        scores = {f"score_{r}": scoring.image_score(maps, r, config.topk_fraction, valid=valid)
                  for r in scoring.REDUCTIONS}
        scores["score_eq1"] = scoring.eq1_score(images, recon)
        for row, (_, path, image, _) in enumerate(chunk):
            record = {"path": str(path), **{k: float(v[row]) for k, v in scores.items()}}
            if heatmap_folders is not None:
                name = f"{start + row:04d}_{path.stem}.png"
                picture = heatmap_folders[0] / name
                title = f"{path.name}  score={record[f'score_{config.score_reduction}']:.5f}"
                shown = maps[row].masked_fill(~valid[row], float(maps[row][valid[row]].min()))
                save_heatmap(picture, image, recon[row], shown,
                             title=f"{title}  ({note})" if note else title)
                record["heatmap"] = str(heatmap_folders[1] / name)
            rows.append(record)
        bar.update(len(chunk))
    bar.close()
    return rows


def _replace_folder(new: Path, out: Path) -> None:
    """Move the complete ``new`` folder to ``out``; an older ``out`` goes only once it is replaced."""
    if not out.exists():
        os.replace(new, out)
        return
    old = make_folder_beside(out, "old")
    os.replace(out, old / out.name)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old / out.name, out)  # put the old output back, whole
        raise
    finally:
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
