"""``python -m bench.gpu pack``: the real data, resized to the model's input, in one small folder.

Every image goes through the loader's own resize (``maskad_core.data.geometry``: the ``squash``
rule, Lanczos; masks by area with any coverage marking a pixel), so the GPU run sees the pixels the
study's loader would give at that size. Training images are stored as JPEG (quality 95, no chroma
subsampling), test images and masks as PNG (lossless); an image whose three channels are equal
(screw, KolektorSDD) is stored as one grey channel, which the run repeats, so nothing is lost by it.
``manifest.json`` says how the pack was made and lists every file with its label.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from bench.gpu.settings import PACK_FORMAT, PACK_MAX_MIB, PAPER
from maskad_core.data.geometry import resize_image, resize_mask
from maskad_core.data.mvtec import MVTecAD, category_folders

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = REPO.parent / "shared" / "data"
DEFAULT_CATEGORIES = ("bottle", "kolektor_sdd", "screw", "transistor")
JPEG_QUALITY = 95
RULE = "squash"


class PackError(ValueError):
    """Bad input to the packer (a missing source, a pack over its size limit)."""


def _to_pil(image_u8) -> tuple[Image.Image, str]:
    """(3, H, W) uint8 tensor -> a PIL image, grey ("L") when the channels are equal."""
    array = image_u8.permute(1, 2, 0).numpy()
    if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]):
        return Image.fromarray(array[..., 0], "L"), "L"
    return Image.fromarray(array, "RGB"), "RGB"


def _write_split(dataset: MVTecAD, folder: Path, split: str, size: int) -> list[dict]:
    entries = []
    for index, sample in enumerate(dataset.samples):
        with Image.open(sample.path) as source:
            source.load()
            image = resize_image(source, size, RULE)
            source_size = source.size
        picture, mode = _to_pil(image)
        name = f"{split}/{index:04d}" + (".jpg" if split == "train" else ".png")
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if split == "train":
            picture.save(target, "JPEG", quality=JPEG_QUALITY, subsampling=0)
        else:
            picture.save(target, "PNG", optimize=True)
        entry = {"file": name, "label": int(sample.label), "defect_type": sample.defect_type,
                 "mode": mode, "has_mask": bool(sample.has_mask), "mask": None,
                 "source": sample.path.name}
        if sample.mask_path is not None:
            with Image.open(sample.mask_path) as mask_image:
                mask = resize_mask(mask_image, size, RULE, image_size=source_size)
            mask_name = f"{split}/{index:04d}_mask.png"
            Image.fromarray(mask[0].numpy() * 255, "L").convert("1").save(folder / mask_name,
                                                                           optimize=True)
            entry["mask"] = mask_name
        entries.append(entry)
    return entries


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _paper_rows(categories) -> dict:
    from maskad_core.study import paper

    table = paper.table1()
    return {c: float(table.loc[c, "paper"]) for c in categories if c in table.index}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def pack(out: str | Path, source: str | Path = DEFAULT_SOURCE, categories=DEFAULT_CATEGORIES,
         size: int = PAPER["image_size"], max_mib: float = PACK_MAX_MIB) -> dict:
    """Write the pack to ``out`` (replacing an earlier pack there); return its manifest.
    PackError when the source is missing or the pack exceeds ``max_mib`` MiB (the pack is then
    removed, so a too-large pack never travels)."""
    source, out = Path(source).expanduser(), Path(out)
    if not source.is_dir():
        raise PackError(f"--source {source} is not a folder (the real data: ../shared/data)")
    if out.exists() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise PackError(f"--out {out} exists and is not a pack (no manifest.json): not replacing it")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    record: dict = {}
    for category in categories:
        folder = tmp / category
        splits = {}
        for split in ("train", "test"):
            dataset = MVTecAD(source, categories=[category], split=split, image_size=size)
            splits[split] = _write_split(dataset, folder, split, size)
        test = splits["test"]
        record[category] = {
            "train": splits["train"], "test": test,
            "counts": {"train": len(splits["train"]), "test_good": sum(e["label"] == 0 for e in test),
                       "test_defective": sum(e["label"] == 1 for e in test),
                       "masks": sum(e["mask"] is not None for e in test)},
            "has_masks": any(e["mask"] is not None for e in test),
            "source": str(category_folders(source)[category]),
        }
    total = folder_bytes(tmp)
    manifest = {
        "format": PACK_FORMAT,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "command": "python -m bench.gpu pack --out " + str(out),
        "source": str(source),
        "licenses": "MVTec AD and KolektorSDD: CC BY-NC-SA 4.0 (see the source README)",
        "image_size": size,
        "resize": (f"maskad_core.data.geometry.resize_image, non_square={RULE!r}: each axis "
                   "scaled on its own to the square, Lanczos antialiased; masks by resize_mask "
                   "(thresholded at 127, shrunk by area with any coverage defective)"),
        "train_format": f"JPEG quality {JPEG_QUALITY}, no chroma subsampling",
        "test_format": "PNG (lossless); masks as 1-bit PNG",
        "grey": "an image whose three channels are equal is stored as one channel (mode L)",
        "categories": list(categories),
        "counts": {c: r["counts"] for c, r in record.items()},
        "bytes": total,
        "max_mib": max_mib,
        "paper_table1": _paper_rows(categories),
        "files": {c: {k: r[k] for k in ("train", "test", "has_masks", "source")}
                  for c, r in record.items()},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    manifest["bytes"] = total = folder_bytes(tmp)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if total > max_mib * 2**20:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PackError(f"the pack would hold {total / 2**20:.1f} MiB, over --max-mib {max_mib}: "
                        f"pack fewer categories or a smaller --size")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return manifest
