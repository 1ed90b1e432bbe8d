"""The MVTec AD loader on small MVTec-layout fixtures written by the tests."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import DataLoader

from maskad_core.data.geometry import Placement, placement
from maskad_core.data.mvtec import (
    AUGMENTATIONS,
    NON_SQUARE_RULES,
    DataError,
    DataWarning,
    MVTecAD,
    available_categories,
    category_folders,
    read_image,
)
from maskad_core.study.recipe_log import load_log
from maskad_core.training.config import TrainConfig

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


def test_augmenting_a_maskless_sample_skips_its_zero_mask_and_changes_nothing(root):
    # the training images have no mask file: their all-zero mask is no longer cropped, rotated and
    # flipped, and the image and the random stream after it are what they were
    data = MVTecAD(root, categories=["tile"], split="train", image_size=SIZE, augment=True)
    image = data._cache[0][0].float().div(255.0) if data._cache else data[0]["image"]
    zeros = torch.zeros(1, SIZE, SIZE)
    outputs = []
    for skip in (False, True):
        torch.manual_seed(5)
        out_image, out_mask = data._augment(image.clone(), zeros.clone(), mask_is_zero=skip)
        outputs.append((out_image, out_mask, torch.rand(())))
    (old_image, old_mask, old_next), (new_image, new_mask, new_next) = outputs
    assert not torch.equal(old_image, image)  # augmented
    assert torch.equal(new_image, old_image) and torch.equal(new_mask, old_mask)
    assert not old_mask.any() and torch.equal(new_next, old_next)


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


def test_lazy_cache_decodes_an_item_once_when_first_read_and_gives_the_same_items(root, monkeypatch):
    plain = MVTecAD(root, split="test", image_size=SIZE)
    lazy = MVTecAD(root, split="test", image_size=SIZE, cache="lazy")
    assert lazy._cache == [None] * len(lazy)  # nothing decoded up front
    decoded = []
    original = MVTecAD._decode
    monkeypatch.setattr(MVTecAD, "_decode",
                        lambda self, s: (self is lazy and decoded.append(s.path)) or original(self, s))
    for _ in range(2):
        for index in (0, 2):
            assert torch.equal(lazy[index]["image"], plain[index]["image"])
            assert torch.equal(lazy[index]["mask"], plain[index]["mask"])
    assert decoded == [lazy.samples[0].path, lazy.samples[2].path]  # once each, in two passes
    assert lazy._cache[1] is None and lazy._cache[0] is not None


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


# --- images that are not square: the non_square rules -------------------------------------------
NON_SQUARE_SIZES = (16, 32, 64, 128, 224, 256)  # 256: the tall image's width grows, its height shrinks
TALL = (240, 600)  # width, height: the shape of KolektorSDD's images, smaller
TALL_BLOCK = (150, 330, 30, 190)  # rows y0:y1, columns x0:x1 of the planted defect (off centre)


def _non_square_root(tmp_path: Path) -> Path:
    """Category 'tall' (240 x 600) and 'wide' (its transpose), each with one planted bright block
    and its mask, on a flat dark background."""
    r = tmp_path / "ns"
    for name, transpose in (("tall", False), ("wide", True)):
        width, height = TALL
        img = np.full((height, width), 40, np.uint8)
        mask = np.zeros((height, width), np.uint8)
        y0, y1, x0, x1 = TALL_BLOCK
        img[y0:y1, x0:x1], mask[y0:y1, x0:x1] = 255, 255
        if transpose:
            img, mask = img.T.copy(), mask.T.copy()
        _save(r / name / "train" / "good" / "000.png", np.full_like(img, 40))
        _save(r / name / "test" / "block" / "000.png", img)
        _save(r / name / "ground_truth" / "block" / "000_mask.png", mask)
    return r


def _block_boxes(place: Placement, image_size, block, transpose: bool):
    """(outer, inner) boxes (y0, y1, x0, x1) of the block on the canvas: the output pixels that
    touch it, and those it covers entirely."""
    width, height = image_size
    y0, y1, x0, x1 = (block[2], block[3], block[0], block[1]) if transpose else block
    sx, sy = place.width / width, place.height / height
    outer = (place.top + int(np.floor(y0 * sy)), place.top + int(np.ceil(y1 * sy)),
             place.left + int(np.floor(x0 * sx)), place.left + int(np.ceil(x1 * sx)))
    inner = (place.top + int(np.ceil(y0 * sy)), place.top + int(np.floor(y1 * sy)),
             place.left + int(np.ceil(x0 * sx)), place.left + int(np.floor(x1 * sx)))
    return outer, inner


def _box(size: int, box) -> np.ndarray:
    out = np.zeros((size, size), bool)
    out[box[0]:box[1], box[2]:box[3]] = True
    return out


@pytest.mark.parametrize("rule", NON_SQUARE_RULES)
@pytest.mark.parametrize("size", NON_SQUARE_SIZES)
def test_non_square_image_and_mask_stay_aligned(tmp_path, rule, size):
    root = _non_square_root(tmp_path)
    data = MVTecAD(root, split="test", image_size=size, non_square=rule)
    for index, sample in enumerate(data.samples):
        item = data[index]
        image, mask = item["image"], item["mask"][0].numpy() > 0
        assert image.shape == (3, size, size) and mask.shape == (size, size)
        shape = TALL[::-1] if sample.category == "wide" else TALL
        place = placement(shape, size, rule)
        outer, inner = _block_boxes(place, shape, TALL_BLOCK, sample.category == "wide")
        assert inner[1] > inner[0] and inner[3] > inner[2]  # the block spans whole pixels
        bright = image.min(0).values.numpy() > 0.5
        # the bright block lies inside the mask, the mask on the block (one pixel of partial
        # coverage at most), both where the geometry puts them: no shift, no flip, no transpose
        assert not (bright & ~mask).any()
        assert not (mask & ~ndimage.binary_dilation(bright, np.ones((3, 3), bool))).any()
        assert not (mask & ~_box(size, outer)).any() and not (_box(size, inner) & ~mask).any()
        assert not (bright & ~_box(size, outer)).any() and not (_box(size, inner) & ~bright).any()
        assert torch.equal(read_image(sample.path, size, rule), image)
        if rule == "pad":
            _assert_padding(image, mask, place)


def _assert_padding(image: torch.Tensor, mask: np.ndarray, place: Placement) -> None:
    """Outside the placed image: mask 0 and one constant colour, the image's mean."""
    assert place.padded and 0.5 < place.padding_fraction < 0.75
    inside = _box(place.size, (place.top, place.top + place.height,
                               place.left, place.left + place.width))
    assert (~inside).any() and not mask[~inside].any()
    padding = image[:, torch.from_numpy(~inside)]
    assert torch.equal(padding, padding[:, :1].expand_as(padding))
    mean = image[:, torch.from_numpy(inside)].mean(dim=1)
    assert torch.allclose(padding[:, 0], mean, atol=1 / 255)


def test_pad_keeps_the_aspect_and_squash_fills_the_square():
    assert placement((256, 645), 128, "squash") == Placement(128, 128, 0, 0, 128)
    assert placement((256, 645), 128, "pad") == Placement(51, 128, 38, 0, 128)
    assert placement((645, 256), 128, "pad") == Placement(128, 51, 0, 38, 128)
    for rule in NON_SQUARE_RULES:
        assert placement((300, 300), 64, rule) == Placement(64, 64, 0, 0, 64)
        assert placement((1, 1000), 16, rule).width >= 1


def test_a_mask_stored_at_another_size_lands_on_its_image(tmp_path):
    root = _non_square_root(tmp_path)
    path = root / "tall" / "ground_truth" / "block" / "000_mask.png"
    full = MVTecAD(root, categories=["tall"], split="test", image_size=64, non_square="pad")[0]
    Image.open(path).resize((TALL[0] // 2, TALL[1] // 2), Image.Resampling.NEAREST).save(path)
    with pytest.warns(DataWarning, match="120x300 but its image is 240x600; resized onto its image"):
        half = MVTecAD(root, categories=["tall"], split="test", image_size=64, non_square="pad")[0]
    assert torch.equal(half["mask"], full["mask"])


@pytest.mark.parametrize("size", (16, 32, 64))
def test_square_images_are_unchanged_by_either_rule(root, size):
    """Bit-identical to the loader before the rules existed: one Lanczos resize to the square,
    masks by area (any coverage) when shrinking, nearest when enlarging."""
    for rule in NON_SQUARE_RULES:
        data = MVTecAD(root, categories=["tile"], split="test", image_size=size, non_square=rule)
        for index, sample in enumerate(data.samples):
            item = data[index]
            ref = Image.open(sample.path).convert("RGB").resize(
                (size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            expected = torch.from_numpy(np.array(ref)).permute(2, 0, 1).float() / 255.0
            assert torch.equal(item["image"], expected)
            if sample.mask_path is not None:
                raw = Image.open(sample.mask_path).convert("L").point(lambda v: 255 if v > 127 else 0)
                shrink = raw.size[0] > size
                ref = raw.resize((size, size), Image.Resampling.BOX if shrink
                                 else Image.Resampling.NEAREST)
                assert torch.equal(item["mask"][0], torch.from_numpy(np.asarray(ref) > 0).float())


def test_an_unknown_rule_names_the_allowed_ones(root, tmp_path):
    with pytest.raises(DataError, match="non_square must be one of: squash, pad; got 'crop'"):
        MVTecAD(root, non_square="crop")
    with pytest.raises(ValueError, match="squash, pad"):
        read_image(next((root / "tile" / "train" / "good").glob("*.png")), SIZE, "crop")
    assert TrainConfig().non_square == "squash" and NON_SQUARE_RULES == ("squash", "pad")
    TrainConfig(non_square="pad").validate()
    with pytest.raises(ValueError, match="non_square 'crop' is not one of: squash, pad"):
        TrainConfig(non_square="crop").validate()


def test_the_recipe_log_states_the_rule_and_its_measurement():
    (decision,) = [d for d in load_log()["data_decisions"] if d["setting"] == "non_square"]
    assert decision["chosen"] == TrainConfig().non_square
    assert set(decision["alternatives"]) == set(NON_SQUARE_RULES) - {decision["chosen"]}
    measured = Path(__file__).resolve().parents[1] / decision["measurement"]
    assert measured.is_file(), measured
    result = json.loads(measured.read_text())
    assert set(result["rules"]) == set(NON_SQUARE_RULES)


# --- several data sets under one root ----------------------------------------------------------
def test_a_root_reads_categories_and_collections_of_them(root, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(root, shared / "mvtec")  # a collection: bolt, tile
    shutil.copytree(_non_square_root(tmp_path) / "tall", shared / "kolektor")  # a category
    assert available_categories(shared) == ["bolt", "kolektor", "tile"]
    assert category_folders(shared)["tile"] == shared / "mvtec" / "tile"
    assert available_categories(root) == ["bolt", "tile"]  # a plain root reads as before
    both = MVTecAD(shared, categories=["tile", "kolektor"], split="test", image_size=SIZE)
    assert both.categories == ["tile", "kolektor"]
    alone = MVTecAD(root, categories=["tile"], split="test", image_size=SIZE)
    assert both.counts() == {**alone.counts(), ("kolektor", "block"): 1}
    assert all(Path(s.path).is_relative_to(shared / "mvtec" / "tile") for s in both.samples
               if s.category == "tile")
    assert both.category_has_masks("tile") and both.category_has_masks("kolektor")
    assert torch.equal(both[0]["mask"], alone[0]["mask"])
    with pytest.raises(DataError, match="unknown category 'tiles'.*did you mean 'tile'"):
        MVTecAD(shared, categories=["tiles"])
    shutil.copytree(root / "tile", shared / "other" / "tile")
    with pytest.raises(DataError, match="two categories named 'tile'"):
        available_categories(shared)
