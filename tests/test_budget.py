"""bench.records.budget: the validation split that chooses the real profile's epochs holds out normal
training images only, plants defects whose masks cover what changed, and reads as an MVTec AD
category; the rule picks the fewest epochs near the best. No AUROC level is asserted."""

import json

import numpy as np
import pytest
from PIL import Image

from bench.records.budget import DEFECT_KINDS, build_validation_root, choose, held_out, plant_defect
from bench.records.study_budget import trained_runs
from maskad_core.data.mvtec import MVTecAD


def test_held_out_is_a_seeded_disjoint_fifth():
    files = [f"{i:03d}.png" for i in range(50)]
    kept, out = held_out(files)
    assert len(out) == 10 and len(kept) == 40
    assert not set(kept) & set(out) and set(kept) | set(out) == set(files)
    assert held_out(list(reversed(files))) == (kept, out)  # the order given does not matter
    assert held_out(files, seed=1)[1] != out
    with pytest.raises(ValueError, match="at least 2"):
        held_out(["only.png"])


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("shape", [(200, 80), (64, 64, 3)])
def test_a_planted_defect_changes_the_pixels_its_mask_marks(kind, shape):
    rng = np.random.default_rng(3)
    image = rng.integers(60, 200, size=shape, dtype=np.uint8)
    planted, mask = plant_defect(image, kind, np.random.default_rng(0))
    assert planted.shape == image.shape and planted.dtype == np.uint8
    assert mask.shape == image.shape[:2] and mask.any()
    change = np.abs(planted.astype(float) - image.astype(float))
    change = change.max(axis=-1) if change.ndim == 3 else change
    assert change[mask].mean() > 5 * max(change[~mask].mean(), 1e-9)
    if kind != "stain":  # the stain's soft edge just outside its mask changes a little
        assert change[~mask].max() == 0


def test_an_unknown_defect_kind_names_the_allowed_ones():
    with pytest.raises(ValueError, match="patch, scratch, stain"):
        plant_defect(np.zeros((8, 8), np.uint8), "dent", np.random.default_rng(0))


def test_the_validation_root_is_an_mvtec_category_of_held_out_images(tmp_path):
    source = tmp_path / "data" / "widget" / "train" / "good"
    source.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(15):
        Image.fromarray(rng.integers(0, 255, (40, 30), dtype=np.uint8)).save(source / f"{i:03d}.png")
    described = build_validation_root(tmp_path / "data", ["widget"], tmp_path / "val")
    assert described["widget"]["train"] == 12 and described["widget"]["held_out"] == 3
    train = MVTecAD(tmp_path / "val", split="train", image_size=32)
    test = MVTecAD(tmp_path / "val", split="test", image_size=32)
    assert len(train) == 12 and len(test) == 6 and sorted(test.labels) == [0, 0, 0, 1, 1, 1]
    held = set(described["widget"]["held_out_files"])
    assert not held & {p.name for p in (tmp_path / "val" / "widget" / "train" / "good").iterdir()}
    masks = [test[i]["mask"] for i in range(len(test)) if test[i]["label"] == 1]
    assert all(m.sum() > 0 for m in masks)
    with pytest.raises(ValueError, match="not under"):
        build_validation_root(tmp_path / "data", ["gadget"], tmp_path / "val")


def test_the_rule_takes_the_fewest_epochs_within_the_tolerance_of_the_best():
    curve = [{"epochs": 1, "mean_image_auroc": 0.60}, {"epochs": 5, "mean_image_auroc": 0.695},
             {"epochs": 10, "mean_image_auroc": 0.70}, {"epochs": 20, "mean_image_auroc": 0.69}]
    assert choose(curve) == 5
    assert choose(curve, tolerance=0.001) == 10


def test_trained_runs_reads_every_finished_run(tmp_path):
    for name, masking in (("a", "complementary"), ("b", "random")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({
            "config": {"masking": masking, "seed": 1, "image_standardization": "none", "epochs": 5,
                       "depth": 2, "decoder_depth": 4, "mask_ratio": 0.75},
            "training": {"wall_time_s": 90.0}, "image_auroc": 0.7}))
    (tmp_path / "unfinished").mkdir()
    runs = trained_runs(tmp_path)
    assert [r["masking"] for r in runs] == ["complementary", "random"]
    assert runs[0]["training_minutes"] == 1.5 and runs[0]["depths"] == "E2D4"
