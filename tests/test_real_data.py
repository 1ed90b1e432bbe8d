"""The real data in ../shared/data: three MVTec AD categories in mvtec_ad/ (bottle and transistor with
masks, screw without) and KolektorSDD in kolektor_sdd/ (one category, images not square). Each test is skipped
where its folder is missing (a clone without ../shared); CI has both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskad_core.data.geometry import placement
from maskad_core.data.mvtec import NON_SQUARE_RULES, DataError, MVTecAD, available_categories
from maskad_core.training.config import TrainConfig
from maskad_core.training.splits import open_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL = SHARED / "mvtec_ad"
KOLEKTOR = SHARED / "kolektor_sdd"
needs_mvtec = pytest.mark.skipif(not REAL.is_dir(), reason=f"real MVTec AD subset not at {REAL}")
needs_kolektor = pytest.mark.skipif(not KOLEKTOR.is_dir(), reason=f"KolektorSDD not at {KOLEKTOR}")


@needs_mvtec
def test_three_categories_found_license_ignored():
    assert available_categories(REAL) == ["bottle", "screw", "transistor"]


@needs_mvtec
def test_counts_per_split():
    train = MVTecAD(REAL, split="train", image_size=32)
    assert Counter(s.category for s in train.samples) == {"bottle": 209, "screw": 320, "transistor": 213}
    assert set(train.labels) == {0}
    test = MVTecAD(REAL, split="test", image_size=32)
    assert test.counts() == {
        ("bottle", "good"): 20, ("bottle", "broken_large"): 20, ("bottle", "broken_small"): 22,
        ("bottle", "contamination"): 21, ("screw", "good"): 41, ("screw", "defective"): 119,
        ("transistor", "good"): 60, ("transistor", "bent_lead"): 10, ("transistor", "cut_lead"): 10,
        ("transistor", "damaged_case"): 10, ("transistor", "misplaced"): 10,
    }
    assert Counter((s.category, s.label) for s in test.samples) == {
        ("bottle", 0): 20, ("bottle", 1): 63, ("screw", 0): 41, ("screw", 1): 119,
        ("transistor", 0): 60, ("transistor", 1): 40}


@needs_mvtec
def test_bottle_masks_present_and_aligned():
    native = MVTecAD(REAL, categories=["bottle"], split="test", image_size=256)
    small = MVTecAD(REAL, categories=["bottle"], split="test", image_size=64)
    assert native.category_has_masks("bottle")
    assert all(s.has_mask for s in native.samples)
    assert all(s.mask_path is not None for s in native.samples if s.label)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    firsts = {}
    for i, s in enumerate(native.samples):
        firsts.setdefault(s.defect_type, i)
    assert sorted(firsts) == ["broken_large", "broken_small", "contamination", "good"]
    for defect in ("broken_large", "broken_small", "contamination"):
        index = firsts[defect] + 3
        sample = native.samples[index]
        assert sample.defect_type == defect
        big = native[index]
        raw = np.asarray(Image.open(sample.mask_path)) > 127
        assert torch.equal(big["mask"][0].bool(), torch.from_numpy(raw))  # no shift, no flip
        mask = small[index]["mask"][0]
        assert mask.sum() > 0 and small[index]["image"].shape == (3, 64, 64)
        # The resized mask sits where the full-size one does (centroids within a pixel).
        ys, xs = np.nonzero(raw)
        cy, cx = (ys.mean() + 0.5) / 4 - 0.5, (xs.mean() + 0.5) / 4 - 0.5
        assert abs((yy * mask).sum() / mask.sum() - cy) < 1.0
        assert abs((xx * mask).sum() / mask.sum() - cx) < 1.0
    good = [i for i, s in enumerate(native.samples) if s.defect_type == "good"]
    assert len(good) == 20
    for index in good[:5]:
        assert native[index]["label"] == 0 and native[index]["mask"].sum() == 0


@needs_mvtec
def test_screw_has_labels_but_no_masks_and_is_grayscale():
    test = MVTecAD(REAL, categories=["screw"], split="test", image_size=32)
    assert not test.category_has_masks("screw")
    assert not any(s.has_mask for s in test.samples)
    defective = next(i for i, s in enumerate(test.samples) if s.label == 1)
    item = test[defective]
    assert item["label"] == 1 and not item["has_mask"] and item["mask"].sum() == 0
    assert torch.equal(item["image"][0], item["image"][1])
    assert torch.equal(item["image"][1], item["image"][2])


@needs_mvtec
def test_multi_class_set_keeps_categories_apart():
    data = MVTecAD(REAL, categories=["bottle", "screw"], split="test", image_size=32)
    assert data.categories == ["bottle", "screw"]
    per = {c: [data.category_has_masks(c)] for c in data.categories}
    assert per == {"bottle": [True], "screw": [False]}
    items = [data[0], data[len(data) - 1]]
    assert [i["category"] for i in items] == ["bottle", "screw"]


@needs_kolektor
def test_kolektor_loads_as_one_category_with_its_counts():
    train = MVTecAD(SHARED, categories=["kolektor_sdd"], split="train", image_size=32)
    assert train.counts() == {("kolektor_sdd", "good"): 297}
    test = MVTecAD(SHARED, categories=["kolektor_sdd"], split="test", image_size=32)
    assert test.counts() == {("kolektor_sdd", "good"): 50, ("kolektor_sdd", "crack"): 52}
    assert test.category_has_masks("kolektor_sdd") and all(s.has_mask for s in test.samples)
    masks = {s.mask_path for s in test.samples if s.label}
    assert len(masks) == 52 and None not in masks
    assert all(m.name == f"{Path(s.path).stem}_mask.png" for s in test.samples if s.label
               for m in [s.mask_path])
    with pytest.raises(DataError, match="looks like a category folder itself"):
        MVTecAD(KOLEKTOR)


@needs_kolektor
@pytest.mark.parametrize("rule", NON_SQUARE_RULES)
def test_kolektor_cracks_keep_their_masks_at_64_px(rule):
    test = MVTecAD(SHARED, categories=["kolektor_sdd"], split="test", image_size=64, non_square=rule)
    cracks = [i for i, s in enumerate(test.samples) if s.label]
    for index in cracks[::5]:
        sample, item = test.samples[index], test[index]
        assert item["image"].shape == (3, 64, 64) and item["mask"].sum() > 0
        place = placement(Image.open(sample.path).size, 64, rule)
        assert place.padded == (rule == "pad")
        outside = torch.ones(64, 64, dtype=torch.bool)
        outside[place.top:place.top + place.height, place.left:place.left + place.width] = False
        assert item["mask"][0][outside].sum() == 0
        # the resized mask holds every output pixel the crack covers entirely and only pixels the
        # crack touches, the footprints computed here from the placement, not by the loader's code
        raw = np.asarray(Image.open(sample.mask_path)) > 127
        rows = _overlaps(raw.shape[0], place.height, place.top, 64)
        cols = _overlaps(raw.shape[1], place.width, place.left, 64)
        touched = (rows @ raw @ cols.T) > 0
        covered = (rows @ ~raw @ cols.T) == 0
        covered &= rows.any(1)[:, None] & cols.any(1)[None, :]
        mask = item["mask"][0].numpy() > 0
        assert not (mask & ~touched).any() and not (covered & ~mask).any()


def _overlaps(n_in: int, n_out: int, offset: int, size: int) -> np.ndarray:
    """(size, n_in) 0/1: output pixel i (of n_out placed at offset) overlaps input pixel j."""
    scale = n_out / n_in
    out = np.zeros((size, n_in), dtype=np.int64)
    for i in range(n_out):
        lo, hi = i / scale, (i + 1) / scale
        out[offset + i, int(np.floor(lo + 1e-9)):int(np.ceil(hi - 1e-9))] = 1
    return out


@needs_mvtec
@needs_kolektor
def test_one_configuration_names_every_real_category():
    assert available_categories(SHARED) == ["bottle", "kolektor_sdd", "screw", "transistor"]
    config = TrainConfig(data_root=str(SHARED), categories=["bottle", "screw", "kolektor_sdd"],
                         image_size=32, max_train_images_per_category=2).validate()
    train, full = open_dataset(config, "train")
    assert Counter(s.category for s in full.samples) == {"bottle": 209, "kolektor_sdd": 297,
                                                         "screw": 320}
    assert len(train) == 6 and {train[i]["image"].shape for i in range(6)} == {(3, 32, 32)}
    assert full.samples[0].path.is_relative_to(REAL / "bottle")
