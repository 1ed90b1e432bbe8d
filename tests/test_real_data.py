"""The two real MVTec AD categories in ../shared/data/mvtec_ad (bottle with masks, screw without)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskad_core.data import MVTecAD, available_categories

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec_ad"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real MVTec AD subset not at {REAL}")


def test_both_categories_found_license_ignored():
    assert available_categories(REAL) == ["bottle", "screw"]


def test_counts_per_split():
    train = MVTecAD(REAL, split="train", image_size=32)
    assert Counter(s.category for s in train.samples) == {"bottle": 209, "screw": 320}
    assert set(train.labels) == {0}
    test = MVTecAD(REAL, split="test", image_size=32)
    assert test.counts() == {
        ("bottle", "good"): 20, ("bottle", "broken_large"): 20, ("bottle", "broken_small"): 22,
        ("bottle", "contamination"): 21, ("screw", "good"): 41, ("screw", "defective"): 119,
    }
    assert Counter((s.category, s.label) for s in test.samples) == {
        ("bottle", 0): 20, ("bottle", 1): 63, ("screw", 0): 41, ("screw", 1): 119}


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


def test_screw_has_labels_but_no_masks_and_is_grayscale():
    test = MVTecAD(REAL, categories=["screw"], split="test", image_size=32)
    assert not test.category_has_masks("screw")
    assert not any(s.has_mask for s in test.samples)
    defective = next(i for i, s in enumerate(test.samples) if s.label == 1)
    item = test[defective]
    assert item["label"] == 1 and not item["has_mask"] and item["mask"].sum() == 0
    assert torch.equal(item["image"][0], item["image"][1])
    assert torch.equal(item["image"][1], item["image"][2])


def test_multi_class_set_keeps_categories_apart():
    data = MVTecAD(REAL, categories=["bottle", "screw"], split="test", image_size=32)
    assert data.categories == ["bottle", "screw"]
    per = {c: [data.category_has_masks(c)] for c in data.categories}
    assert per == {"bottle": [True], "screw": [False]}
    items = [data[0], data[len(data) - 1]]
    assert [i["category"] for i in items] == ["bottle", "screw"]
