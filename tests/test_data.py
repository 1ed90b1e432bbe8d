"""The MVTec AD loader on small MVTec-layout fixtures written by the tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import DataLoader

from maskad_core.data import (
    AUGMENTATIONS,
    DataError,
    DataWarning,
    MVTecAD,
    available_categories,
    read_image,
)

SIZE = 16


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(seed: int, side: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _square(side: int, box: tuple[int, int, int, int]) -> np.ndarray:
    a = np.zeros((side, side), dtype=np.uint8)
    y0, y1, x0, x1 = box
    a[y0:y1, x0:x1] = 255
    return a


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    """Two categories: 'tile' (RGB, masks) and 'bolt' (grayscale, no ground_truth)."""
    r = tmp_path / "mvtec"
    for i in range(3):
        _save(r / "tile" / "train" / "good" / f"{i:03d}.png", _rgb(i))
    _save(r / "tile" / "test" / "good" / "000.png", _rgb(10))
    for i, box in enumerate([(8, 24, 4, 20), (20, 36, 20, 36)]):
        img = _rgb(20 + i) // 3  # dark, so the white defect square stands out after resizing
        img[_square(40, box) > 0] = 255
        _save(r / "tile" / "test" / "crack" / f"{i:03d}.png", img)
        _save(r / "tile" / "ground_truth" / "crack" / f"{i:03d}_mask.png", _square(40, box))
    gray = np.random.default_rng(5).integers(0, 256, (32, 32), dtype=np.uint8)
    for i in range(2):
        _save(r / "bolt" / "train" / "good" / f"{i:03d}.png", gray)
    _save(r / "bolt" / "test" / "good" / "000.png", gray)
    _save(r / "bolt" / "test" / "defective" / "000_0.png", 255 - gray)
    # Stray files that must be ignored.
    (r / "license.txt").write_text("CC BY-NC-SA")
    (r / ".DS_Store").write_bytes(b"\0\1")
    (r / "tile" / "train" / "good" / "Thumbs.db").write_bytes(b"\0")
    (r / "tile" / "train" / "good" / ".DS_Store").write_bytes(b"\0")
    (r / "tile" / "train" / "good" / "notes.txt").write_text("x")
    (r / "tile" / "train" / "good" / "._000.png").write_bytes(b"\0\5junk")
    (r / "tile" / "test" / ".hidden").mkdir()
    _save(r / "tile" / "test" / ".hidden" / "000.png", _rgb(99))
    (r / "__MACOSX").mkdir()
    return r


def test_categories_counts_labels_and_masks(root):
    assert available_categories(root) == ["bolt", "tile"]
    train = MVTecAD(root, split="train", image_size=SIZE)
    assert train.categories == ["bolt", "tile"]
    assert train.counts() == {("bolt", "good"): 2, ("tile", "good"): 3}
    test = MVTecAD(root, split="test", image_size=SIZE)
    assert test.counts() == {("bolt", "good"): 1, ("bolt", "defective"): 1,
                             ("tile", "crack"): 2, ("tile", "good"): 1}
    for item in test:
        assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
        assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
        assert item["mask"].shape == (1, SIZE, SIZE)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["label"] == (item["defect_type"] != "good")
        if item["category"] == "tile" and item["label"] == 1:
            assert item["has_mask"] and item["mask"].sum() > 0
        else:
            assert item["mask"].sum() == 0
    assert test.category_has_masks("tile") and not test.category_has_masks("bolt")
    assert all(not test[i]["has_mask"] for i in range(len(test)) if test.samples[i].category == "bolt")
    assert all(test[i]["has_mask"] for i in range(len(test)) if test.samples[i].category == "tile")
    with pytest.raises(DataError, match="not in this data set"):
        test.category_has_masks("cable")


def test_one_category_by_name_and_dataloader_batches(root):
    data = MVTecAD(root, categories="tile", split="test", image_size=SIZE)
    batch = next(iter(DataLoader(data, batch_size=3)))
    assert batch["image"].shape == (3, 3, SIZE, SIZE)
    assert batch["label"].tolist() == [1, 1, 0]
    assert batch["category"] == ["tile"] * 3


def test_grayscale_repeated_to_three_channels(root, tmp_path):
    item = MVTecAD(root, categories=["bolt"], split="train", image_size=SIZE)[0]
    assert torch.equal(item["image"][0], item["image"][1])
    assert torch.equal(item["image"][0], item["image"][2])
    # 16-bit grayscale is scaled, not clipped.
    deep = tmp_path / "deep"
    ramp = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    (deep / "c" / "train" / "good").mkdir(parents=True)
    Image.fromarray(ramp).save(deep / "c" / "train" / "good" / "0.png")
    image = MVTecAD(deep, split="train", image_size=32)[0]["image"]
    assert image.min() < 0.05 and image.max() > 0.95
    assert torch.equal(image[0], image[2])


def test_mask_aligned_with_image_after_resize(root):
    data = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    for item in data:
        if item["label"] == 1:
            bright = item["image"].min(0).values > 0.5  # the square painted white
            mask = item["mask"][0] > 0
            # every defect pixel is kept, and the mask grows by at most the one pixel of partial
            # coverage that area resizing marks defective
            assert not (bright & ~mask).any()
            grown = ndimage.binary_dilation(bright.numpy(), iterations=1)
            assert not (mask.numpy() & ~grown).any()


def test_a_defect_smaller_than_a_pixel_keeps_a_mask(tmp_path):
    category = tmp_path / "c"
    for folder in ("train/good", "test/dot", "ground_truth/dot"):
        (category / folder).mkdir(parents=True)
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(category / "train/good/000.png")
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(category / "test/dot/000.png")
    mask = np.zeros((256, 256), np.uint8)
    mask[101, 77] = 255  # one pixel, an eighth of a pixel wide at 32 px
    Image.fromarray(mask).save(category / "ground_truth/dot/000_mask.png")
    item = MVTecAD(tmp_path, split="test", image_size=32)[0]
    assert item["mask"].sum().item() == 1
    assert item["mask"][0, 101 * 32 // 256, 77 * 32 // 256] == 1


def test_unknown_category_lists_the_ones_found(root):
    with pytest.raises(DataError, match=r"unknown category 'tilee'.*did you mean 'tile'.*bolt, tile"):
        MVTecAD(root, categories=["tilee"])


def test_empty_category_and_empty_root(root, tmp_path):
    (root / "empty" / "train" / "good").mkdir(parents=True)
    (root / "empty" / "train" / "good" / "readme.txt").write_text("nothing")
    with pytest.raises(DataError, match="'empty' is empty"):
        MVTecAD(root, categories=["empty"])
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match="no categories found"):
        MVTecAD(tmp_path / "bare")
    with pytest.raises(DataError, match="does not exist"):
        MVTecAD(tmp_path / "missing")
    with pytest.raises(DataError, match="looks like a category folder itself, pass its parent"):
        MVTecAD(root / "tile")


def test_bad_parameters_get_named(root):
    with pytest.raises(DataError, match="split must be one of"):
        MVTecAD(root, split="val")
    with pytest.raises(DataError, match="image_size"):
        MVTecAD(root, image_size=0)
    with pytest.raises(DataError, match=r"unknown augmentation\(s\) \['zoom'\]"):
        MVTecAD(root, augment=["flip", "zoom"])


def _corrupt(root: Path) -> Path:
    good = root / "tile" / "train" / "good"
    full = (good / "000.png").read_bytes()
    (good / "003.png").write_bytes(full[: len(full) // 2])  # truncated
    (good / "004.png").write_bytes(b"this is not a png")
    return good


def test_corrupt_image_error_names_the_file(root):
    good = _corrupt(root)
    data = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE)
    assert len(data) == 5
    with pytest.raises(DataError, match=r"cannot read image .*003\.png"):
        data[3]
    with pytest.raises(DataError, match=r"cannot read image .*004\.png"):
        data[4]
    with pytest.raises(DataError, match="003.png"):
        MVTecAD(root, categories=["tile"], split="train", image_size=SIZE, cache=True)
    assert good.is_dir()


def test_skip_corrupt_records_and_warns(root):
    _corrupt(root)
    with pytest.warns(DataWarning, match=r"skipped 2 unreadable file\(s\).*003\.png, 004\.png"):
        data = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE, skip_corrupt=True)
    assert len(data) == 3
    assert [Path(p).name for p, _ in data.skipped] == ["003.png", "004.png"]
    assert all("cannot read image" in reason for _, reason in data.skipped)
    assert all(item["image"].shape == (3, SIZE, SIZE) for item in data)


def test_all_corrupt_category_is_an_error_even_when_skipping(root):
    for p in (root / "bolt" / "train" / "good").iterdir():
        p.write_bytes(b"broken")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="'bolt' has no readable images"):
        MVTecAD(root, categories=["bolt"], skip_corrupt=True)


def test_mask_of_other_size_is_resized_with_warning(root):
    small = _square(20, (4, 12, 2, 10))  # half the image's 40 px, same relative box as crack/000
    Image.fromarray(small).save(root / "tile" / "ground_truth" / "crack" / "000_mask.png")
    data = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    with pytest.warns(DataWarning, match=r"000_mask\.png is 20x20 but its image is 40x40; resized"):
        item = data[0]
    expected = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert torch.equal(item["mask"], expected[0]["mask"])
    assert item["mask"].sum() > 0


def test_defective_image_without_its_mask_warns(root):
    (root / "tile" / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.warns(DataWarning, match=r"1 defective image\(s\) of 'tile' have no mask"):
        data = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    by_name = {Path(s.path).name: s for s in data.samples if s.label}
    assert by_name["000.png"].has_mask and not by_name["001.png"].has_mask


def test_augmentation_only_on_train_and_reproducible(root):
    plain = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE)
    aug = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE, augment=True)
    assert aug.augmentations == frozenset(AUGMENTATIONS)
    torch.manual_seed(3)
    first = aug[0]["image"]
    torch.manual_seed(3)
    assert torch.equal(first, aug[0]["image"])
    assert not torch.equal(first, plain[0]["image"])
    test_aug = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE, augment=True)
    test_plain = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    assert test_aug.augmentations == frozenset()
    for a, b in zip(test_aug, test_plain, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_flip_only_gives_a_flip_of_the_plain_image(root):
    plain = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE)[0]["image"]
    flip = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE, augment=["flip"])
    candidates = [plain, plain.flip(-1), plain.flip(-2), plain.flip(-1).flip(-2)]
    seen = set()
    torch.manual_seed(0)
    for _ in range(12):
        out = flip[0]["image"]
        matches = [i for i, c in enumerate(candidates) if torch.equal(out, c)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) >= 3


def test_cache_gives_the_same_items(root):
    plain = MVTecAD(root, split="test", image_size=SIZE)
    cached = MVTecAD(root, split="test", image_size=SIZE, cache=True)
    for a, b in zip(plain, cached, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["path"] == b["path"]


def test_augmentation_reproducible_in_seeded_dataloader_workers(root):
    data = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE, augment="crop,rotate")
    assert data.augmentations == frozenset({"crop", "rotate"})

    def epoch():
        torch.manual_seed(7)
        return torch.cat([b["image"] for b in DataLoader(data, batch_size=1, num_workers=2)])

    first, second = epoch(), epoch()
    assert torch.equal(first, second)
    torch.manual_seed(8)
    other = torch.cat([b["image"] for b in DataLoader(data, batch_size=1, num_workers=2)])
    assert not torch.equal(first, other)


def test_read_image_matches_the_dataset(root):
    data = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    assert torch.equal(read_image(data.samples[0].path, SIZE), data[0]["image"])
    bad = root / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        read_image(bad, SIZE)
