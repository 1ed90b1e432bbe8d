"""The embedded synthetic data set: layout, masks, determinism, caching, difficulty, picture."""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskad_core.data import synthetic
from maskad_core.data.mvtec import DataError, MVTecAD, available_categories
from maskad_core.data.synthetic import (
    CATEGORY_SPECS,
    SYNTHETIC_CATEGORIES,
    default_data_root,
    draw_pair,
    generate_synthetic,
    plot_overview,
    writer,
)

SMALL = {"image_size": 32, "n_train": 2, "n_test_good": 1, "n_test_defective": 4}


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "set", seed=0, **SMALL)


def _pngs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_category_mix_meets_the_brief():
    assert len(SYNTHETIC_CATEGORIES) >= 10 and len(set(SYNTHETIC_CATEGORIES)) == len(CATEGORY_SPECS)
    assert sum(s.kind == "texture" for s in CATEGORY_SPECS) >= 4
    assert sum(s.kind == "object" for s in CATEGORY_SPECS) >= 4
    assert any(s.grayscale for s in CATEGORY_SPECS)
    assert all(len(set(s.defects)) >= 3 for s in CATEGORY_SPECS)


def test_default_split_sizes():
    assert synthetic.DEFAULT_TRAIN_GOOD >= 60
    assert synthetic.DEFAULT_TEST_GOOD >= 20
    assert synthetic.DEFAULT_TEST_DEFECTIVE >= 30
    assert synthetic.DEFAULT_IMAGE_SIZE == 128
    plan = list(writer._split_plan(SYNTHETIC_CATEGORIES, 60, 20, 30))
    for cat in SYNTHETIC_CATEGORIES:
        rows = [r for r in plan if r[0] == cat]
        assert sum(r[1] == "train" for r in rows) == 60
        assert sum(r[1] == "test" and r[4] is None for r in rows) == 20
        assert sum(r[4] is not None for r in rows) == 30


def test_layout_and_counts_on_disk(small_root):
    assert available_categories(small_root) == sorted(SYNTHETIC_CATEGORIES)
    for spec in CATEGORY_SPECS:
        cat = small_root / spec.name
        assert len(list((cat / "train" / "good").glob("*.png"))) == 2
        assert len(list((cat / "test" / "good").glob("*.png"))) == 1
        defect_dirs = sorted(d.name for d in (cat / "test").iterdir() if d.name != "good")
        assert defect_dirs == sorted(spec.defects)
        assert sum(len(list((cat / "test" / d).glob("*.png"))) for d in defect_dirs) == 4
        for d in defect_dirs:
            images = sorted(p.stem for p in (cat / "test" / d).glob("*.png"))
            masks = sorted(p.stem for p in (cat / "ground_truth" / d).glob("*.png"))
            assert masks == [f"{s}_mask" for s in images]
        mode = Image.open(next((cat / "train" / "good").glob("*.png"))).mode
        assert mode == ("L" if spec.grayscale else "RGB")


def test_masks_non_empty_exactly_for_defective_images(small_root):
    data = MVTecAD(small_root, split="test", image_size=32)
    assert len(data) == len(SYNTHETIC_CATEGORIES) * 5
    for item in data:
        assert item["has_mask"]
        if item["label"]:
            assert item["mask"].sum() >= 3, item["path"]
        else:
            assert item["mask"].sum() == 0, item["path"]


def test_readme_and_metadata_say_synthetic(small_root):
    meta = json.loads((small_root / "metadata.json").read_text())
    assert meta["note"].startswith("SYNTHETIC") and "not MVTec AD" in meta["note"]
    assert (meta["version"], meta["seed"], meta["image_size"]) == (synthetic.GENERATOR_VERSION, 0, 32)
    readme = (small_root / "README.md").read_text()
    assert "NOT MVTec AD" in readme and "seed 0" in readme and "32 px" in readme
    assert synthetic.writer.VERSION_REASONS[synthetic.GENERATOR_VERSION] in readme


@pytest.mark.parametrize("spec", CATEGORY_SPECS, ids=lambda s: s.name)
def test_mask_is_exactly_the_changed_pixels(spec):
    for defect in spec.defects:
        normal, defective, mask = draw_pair(spec.name, 1, "test", 0, 40, defect, severity=0.5)
        diff = np.abs(normal.astype(int) - defective.astype(int))
        changed = diff.max(-1) > 0 if diff.ndim == 3 else diff > 0
        assert np.array_equal(changed, mask.astype(bool)), defect
        assert 3 <= mask.sum() < mask.size / 2, defect


def test_same_seed_byte_identical_other_seed_differs(small_root, tmp_path):
    params = dict(SMALL, categories=["screw", "weave"])
    again = generate_synthetic(tmp_path / "again", seed=0, **params)
    other = generate_synthetic(tmp_path / "other", seed=1, **params)
    reference = {k: v for k, v in _pngs(small_root).items() if k.split("/")[0] in ("screw", "weave")}
    assert _pngs(again) == reference
    other_files = _pngs(other)
    assert other_files.keys() == reference.keys()
    assert sum(other_files[k] != reference[k] for k in reference) == len(reference)


def test_severity_spans_faint_to_obvious(small_root, tmp_path):
    root = generate_synthetic(tmp_path / "sev", seed=0, image_size=48, n_train=1, n_test_good=1,
                              n_test_defective=8, categories=["grass", "nut"])
    with open(root / "defects.csv") as fh:
        rows = list(csv.DictReader(fh))
    for cat in ("grass", "nut"):
        for defect in {r["defect_type"] for r in rows if r["category"] == cat}:
            sel = [r for r in rows if r["category"] == cat and r["defect_type"] == defect]
            sev = [float(r["severity"]) for r in sel]
            pixels = [int(r["mask_pixels"]) for r in sel]
            assert min(sev) <= 0.25 and max(sev) >= 0.75
            assert pixels[sev.index(max(sev))] > pixels[sev.index(min(sev))], (cat, defect)


def test_normal_images_vary(small_root, tmp_path):
    root = generate_synthetic(tmp_path / "var", seed=0, image_size=32, n_train=4, n_test_good=1,
                              n_test_defective=3)
    for cat in SYNTHETIC_CATEGORIES:
        imgs = [np.asarray(Image.open(p), dtype=float) / 255
                for p in sorted((root / cat / "train" / "good").glob("*.png"))]
        for a, b in combinations(imgs, 2):
            assert np.abs(a - b).mean() > 0.01, cat


def test_existing_complete_set_is_reused(small_root):
    before = {p: p.stat().st_mtime_ns for p in small_root.rglob("*.png")}
    assert generate_synthetic(small_root, seed=0, **SMALL) == small_root
    assert {p: p.stat().st_mtime_ns for p in small_root.rglob("*.png")} == before


def test_refuses_to_overwrite_other_content(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    for overwrite in (False, True):  # never deleted, not even with overwrite
        with pytest.raises(DataError, match="mine holds files that are not a generated synthetic "
                                            "set \\(e.g. thesis.tex\\)"):
            generate_synthetic(foreign, categories=["pill"], overwrite=overwrite,
                               **{**SMALL, "n_test_defective": 3})
    assert (foreign / "thesis.tex").read_text() == "keep me"
    (foreign / "thesis.tex").unlink()  # an empty folder is fine
    out = generate_synthetic(foreign, categories=["pill"], **{**SMALL, "n_test_defective": 3})
    assert (out / "pill" / "train" / "good").is_dir() and synthetic.foreign_entry(out) is None
    # a set with other parameters is replaced only with overwrite
    with pytest.raises(DataError, match="a synthetic set with other parameters; pass overwrite=True"):
        generate_synthetic(foreign, categories=["pill"], seed=1, **{**SMALL, "n_test_defective": 3})
    generate_synthetic(foreign, categories=["pill"], seed=1, overwrite=True,
                       **{**SMALL, "n_test_defective": 3})
    assert json.loads((foreign / "metadata.json").read_text())["seed"] == 1


def test_bad_parameters_get_named(tmp_path):
    with pytest.raises(DataError, match="unknown synthetic categories \\['bolt'\\]"):
        generate_synthetic(tmp_path / "x", categories=["bolt"])
    with pytest.raises(DataError, match="image_size must be an integer >= 32"):
        generate_synthetic(tmp_path / "x", image_size=8)
    with pytest.raises(DataError, match="seed must be a non-negative integer"):
        generate_synthetic(tmp_path / "x", seed=-1)
    with pytest.raises(DataError, match="n_train must be a positive integer"):
        generate_synthetic(tmp_path / "x", n_train=0)
    with pytest.raises(DataError, match="has no defect type 'bent'"):
        draw_pair("pill", 0, "test", 0, 32, "bent")


@pytest.fixture()
def tiny_defaults(monkeypatch, tmp_path):
    """default_data_root with a small default set, cached under a temporary MASKAD_HOME."""
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(writer, "SYNTHETIC_CATEGORIES", ("washer", "leather"))
    monkeypatch.setattr(writer, "DEFAULT_TRAIN_GOOD", 1)
    monkeypatch.setattr(writer, "DEFAULT_TEST_GOOD", 1)
    monkeypatch.setattr(writer, "DEFAULT_TEST_DEFECTIVE", 4)
    return tmp_path / "home" / "data"


def test_default_root_cached_and_rebuilt_after_partial_write(tiny_defaults):
    root = default_data_root(seed=3, image_size=32)
    assert root.parent == tiny_defaults and "seed3" in root.name and "32px" in root.name
    assert available_categories(root) == ["leather", "washer"]
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert default_data_root(seed=3, image_size=32) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == mtimes  # re-used
    # A file lost after the fact: the set is incomplete and is rebuilt.
    lost = root / "washer" / "train" / "good" / "000.png"
    reference = lost.read_bytes()
    lost.unlink()
    assert default_data_root(seed=3, image_size=32) == root
    assert lost.read_bytes() == reference
    # An interrupted run: no completion marker, a stray partial folder beside it.
    (root / synthetic.MARKER_NAME).unlink()
    (root / "washer" / "test" / "good" / "000.png").write_bytes(b"half a png")
    stale = root.parent / f".{root.name}.partial-999999999-deadbeef"  # no such pid
    (stale / "washer").mkdir(parents=True)
    busy = root.parent / f".{root.name}.partial-{os.getppid()}-cafe0000"  # a live writer's
    busy.mkdir()
    default_data_root(seed=3, image_size=32)
    assert not stale.exists() and busy.is_dir()
    assert synthetic.is_complete(root)
    Image.open(root / "washer" / "test" / "good" / "000.png").load()


def test_overview_figure_shows_every_category(small_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pyplot / backend warnings
        fig = plot_overview(small_root)
    n_cols = max(len(s.defects) for s in CATEGORY_SPECS) + 1
    assert len(fig.axes) == len(SYNTHETIC_CATEGORIES) * n_cols
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == sorted(SYNTHETIC_CATEGORIES)
    # Every defect panel outlines its mask (a contour was drawn).
    titled = [ax for ax in fig.axes if ax.get_title() not in ("", "good")]
    assert len(titled) == sum(len(s.defects) for s in CATEGORY_SPECS)
    assert all(ax.collections for ax in titled)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overview_with_masks_beside(small_root):
    fig = plot_overview(small_root, categories=["wood", "screw"], masks="beside", example=0)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * 5
    for ax in shown:
        h, w = ax.images[0].get_array().shape[:2]
        assert w > 2 * h  # image, gap, mask
        assert not ax.collections
    with pytest.raises(DataError, match="masks must be 'outline' or 'beside'"):
        plot_overview(small_root, masks="overlay")


@pytest.mark.parametrize("seed", [2, 3])
def test_small_images_still_get_a_visible_defect_for_every_seed(tmp_path, seed):
    # at 32 px a faint defect could vanish in rounding; the generator raises severity instead of failing
    root = generate_synthetic(tmp_path / "set", seed=seed, image_size=32, categories=["screw"],
                              n_train=1, n_test_good=1, n_test_defective=30)
    masks = sorted((root / "screw" / "ground_truth").rglob("*_mask.png"))
    assert len(masks) == 30
    assert all(np.asarray(Image.open(m)).any() for m in masks)
