"""The GPU script (``python -m bench.gpu``) on the CPU: its pack, its epoch rule, its fallbacks
(each equal to the study's code it stands in for) and a dry run of the whole run, with the
packages a bare GPU box may lack blocked, so that the script works the first time a GPU is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.gpu import augment, fallbacks, pack, probe, record, settings
from bench.gpu.__main__ import main

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # the tiny pack's side: 16 patches of 8 px, 4 complementary views


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _category(root: Path, name: str, shape: tuple, grey: bool, masks: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, shape if grey else (*shape, 3), dtype=np.uint8)

    def image() -> np.ndarray:
        return np.clip(base.astype(int) + rng.integers(-10, 10, base.shape), 0, 255).astype(np.uint8)

    for i in range(8):
        _write(root / name / "train" / "good" / f"{i:03d}.png", image())
    for i in range(3):
        _write(root / name / "test" / "good" / f"{i:03d}.png", image())
        defect = image()
        defect[5:15, 5:15] = 255
        _write(root / name / "test" / "crack" / f"{i:03d}.png", defect)
        if masks:
            mask = np.zeros(shape, dtype=np.uint8)
            mask[5:15, 5:15] = 255
            _write(root / name / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask)


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory) -> Path:
    """Three made-up categories: square RGB with masks, a tall grey one with masks (the
    non-square rule), a grey one without masks (as screw)."""
    root = tmp_path_factory.mktemp("data")
    _category(root, "bottle", (40, 40), grey=False, masks=True, seed=0)
    _category(root, "kolektor_sdd", (80, 32), grey=True, masks=True, seed=1)
    _category(root, "screw", (40, 40), grey=True, masks=False, seed=2)
    out = tmp_path_factory.mktemp("pack") / "pack"
    pack.pack(out, source=root, categories=["bottle", "kolektor_sdd", "screw"], size=SIZE)
    return out


def test_the_pack_says_how_it_was_made_and_keeps_under_its_limit(tiny_pack, tmp_path):
    manifest = json.loads((tiny_pack / "manifest.json").read_text())
    assert manifest["image_size"] == SIZE and "squash" in manifest["resize"]
    assert "JPEG quality 95" in manifest["train_format"] and "PNG" in manifest["test_format"]
    assert manifest["counts"]["bottle"] == {"train": 8, "test_good": 3, "test_defective": 3, "masks": 3}
    assert manifest["counts"]["screw"]["masks"] == 0
    assert manifest["paper_table1"] == {"bottle": 0.993, "screw": 0.804}
    assert abs(manifest["bytes"] - pack.folder_bytes(tiny_pack)) < 100  # the manifest's own digits
    modes = {c: {e["mode"] for e in manifest["files"][c]["train"]} for c in manifest["categories"]}
    assert modes == {"bottle": {"RGB"}, "kolektor_sdd": {"L"}, "screw": {"L"}}
    with Image.open(tiny_pack / "kolektor_sdd" / "test" / "0000_mask.png") as mask:  # crack/ sorts first
        assert mask.size == (SIZE, SIZE)  # squashed with its image
    with pytest.raises(pack.PackError, match="over --max-mib"):
        pack.pack(tmp_path / "big", source=Path(manifest["source"]), categories=["bottle"],
                  size=SIZE, max_mib=0.001)
    assert not (tmp_path / "big").exists() and not (tmp_path / "big.tmp").exists()


def test_the_real_pack_if_made_is_under_40_mib():
    manifest_path = REPO / ".gpu-pack" / "manifest.json"
    if not manifest_path.is_file():
        pytest.skip("no .gpu-pack here (make gpu-pack)")
    manifest = json.loads(manifest_path.read_text())
    assert pack.folder_bytes(REPO / ".gpu-pack") < 40 * 2**20
    assert manifest["image_size"] == 224 and set(manifest["categories"]) == {
        "bottle", "kolektor_sdd", "screw", "transistor"}


def test_the_epochs_are_the_paper_s_when_they_fit_and_fewer_when_not():
    assert probe.choose_epochs(500.0, 0.4, 1000)[0] == 1000  # 400 s of 450 planned
    epochs, why = probe.choose_epochs(500.0, 0.9, 1000)
    assert epochs == int(500 * 0.9 / 0.9) == 500 and "fewer than 1000" in why
    assert probe.choose_epochs(-5.0, 1.0, 1000)[0] == 1  # no time left: one epoch still runs
    assert probe.choose_epochs(100.0, 1.0, 1000, safety=0.5)[0] == 50
    with pytest.raises(ValueError, match="seconds_per_epoch"):
        probe.choose_epochs(100.0, 0.0, 1000)


def test_the_settings_are_the_paper_profile_and_the_recipe():
    from maskad_core.evaluation.detectors import DEFAULT_SMOOTH_SIGMA
    from maskad_core.study.profiles import load_profile
    from maskad_core.training.config import TrainConfig

    paper = load_profile("paper", {"data_root": "/x"})
    assert {k: paper[k] for k in settings.PAPER} == settings.PAPER
    defaults = TrainConfig()
    for key, value in settings.RECIPE.items():
        if hasattr(defaults, key):
            assert getattr(defaults, key) == (list(value) if isinstance(value, tuple) else value), key
    assert (defaults.anomaly_map, defaults.map_standardization, defaults.score_reduction) == (
        settings.DEFAULT_SCORE["anomaly_map"], settings.DEFAULT_SCORE["map_standardization"],
        settings.DEFAULT_SCORE["score_reduction"])
    assert defaults.smooth_sigma == defaults.image_size * settings.DEFAULT_SCORE["smoothing_fraction_of_side"]
    assert settings.DETECTOR_SMOOTH_SIGMA == DEFAULT_SMOOTH_SIGMA


def test_the_fallbacks_equal_the_study_s_code():
    from bench.gpu.train import lr_factor as gpu_lr_factor
    from maskad_core import metrics
    from maskad_core.losses import ReconstructionLoss
    from maskad_core.training.runtime import derive_seed
    from maskad_core.training.train import lr_factor

    generator = torch.Generator().manual_seed(0)
    recon, target = torch.rand(2, 3, 32, 32, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    ours, our_parts = fallbacks.SSIMLoss(0.1, 1.0)(recon, target)
    theirs, their_parts = ReconstructionLoss(0.1, 1.0, 0.0, lpips="off")(recon, target)
    assert torch.allclose(ours, theirs, atol=1e-6) and torch.allclose(our_parts["ssim"], their_parts["ssim"], atol=1e-6)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.normal(size=60) + labels, 1)  # rounded: ties
    assert fallbacks.image_auroc(labels, scores) == pytest.approx(metrics.image_auroc(labels, scores), abs=1e-12)
    assert fallbacks.auroc_interval(labels, scores, resamples=200) == pytest.approx(
        metrics.auroc_interval(labels, scores, resamples=200), abs=1e-12)
    masks, maps = rng.random((3, 8, 8)) > 0.8, np.round(rng.random((3, 8, 8)), 2)
    assert fallbacks.pixel_auroc(masks, maps) == pytest.approx(metrics.pixel_auroc(masks, maps), abs=1e-12)
    assert fallbacks.derive_seed(0, "eval", 7) == derive_seed(0, "eval", 7)
    assert [gpu_lr_factor(s, 100, 10.0) for s in (0, 9, 10, 55, 99)] == \
        [lr_factor(s, 100, 10.0) for s in (0, 9, 10, 55, 99)]


def test_the_batch_masks_and_augmentation_keep_the_recipe():
    generator = torch.Generator().manual_seed(0)
    masks = augment.complementary_masks_batch(5, 196, 4, generator, "cpu")
    assert masks.shape == (5, 4, 196)
    assert bool(((~masks).sum(dim=1) == 1).all())  # each patch visible in exactly one view
    assert bool(((~masks).sum(dim=2) == 49).all())
    random = augment.random_masks_batch(5, 196, 0.75, generator, "cpu")
    assert random.shape == (5, 1, 196) and bool((random.sum(-1) == 147).all())
    images = torch.rand(4, 3, 16, 16, generator=generator)
    same = augment.augment_batch(images, generator, crop_scale=(1.0, 1.0), rotate_degrees=0.0,
                                 flip_probability=0.0)
    assert torch.allclose(same, images, atol=1e-5)  # no crop, turn or flip: the image itself
    flipped = augment.augment_batch(images, generator, crop_scale=(1.0, 1.0), rotate_degrees=0.0,
                                    flip_probability=1.0)
    assert torch.allclose(flipped, images.flip(-1).flip(-2), atol=1e-5)
    changed = augment.augment_batch(images, generator)
    assert changed.shape == images.shape and float(changed.min()) >= 0 and float(changed.max()) <= 1
    assert not torch.allclose(changed, images, atol=1e-3)


def _check_record(out: Path, categories=("bottle", "kolektor_sdd", "screw")) -> dict:
    result = json.loads((out / "gpu-paper.json").read_text())
    assert result["status"] == "complete" and result["dry_run"] is True
    assert set(result["phases_s"]) >= {"load", "measure", "train_complementary", "evaluate_complementary"}
    throughput = result["throughput"]
    assert throughput["images_per_s"] > 0 and throughput["matmul_flops_per_s"] > 0
    assert throughput["flops_per_image"] > 0 and 0 < throughput["fraction_of_matmul_rate"]
    epochs = result["epochs"]
    assert 1 <= epochs["run"] <= epochs["planned"] <= 2 and epochs["cap"] == 1000 and epochs["why"]
    arm = result["arms"]["complementary"]
    assert len(arm["loss_curve"]) == epochs["run"] and np.isfinite(arm["loss_curve"][-1]["total"])
    rows = arm["evaluation"]["per_category"]
    assert list(rows) == list(categories)
    for row in rows.values():
        for score in ("default", "eq1"):
            low, high = row[score]["ci"]
            assert 0 <= low <= row[score]["auroc"] <= high <= 1
    assert rows["screw"]["pixel_auroc"] is None and 0 <= rows["bottle"]["pixel_auroc"] <= 1
    assert arm["mvtec_mean"]["categories"] == ["bottle", "screw"]
    assert arm["mvtec_mean"]["paper"] == pytest.approx((0.993 + 0.804) / 2)
    assert "LPIPS off" in result["fallbacks"]["lpips"]
    text = (out / "gpu-paper.md").read_text()
    assert "**dry run**" in text and "MVTec mean" in text and "complete" in text
    return result


def test_a_dry_run_trains_evaluates_and_records(tiny_pack, tmp_path):
    out = tmp_path / "out"
    code = main(["run", "--pack", str(tiny_pack), "--out", str(out), "--budget-s", "120",
                 "--dry-run", "--bootstrap", "50", "--random-baseline"])
    assert code == 0
    result = _check_record(out)
    assert result["fallbacks"]["loss"].startswith("maskad_core.losses")
    assert result["fallbacks"]["metrics"] == "maskad_core.metrics"
    assert result["fallbacks"]["compile"].startswith("eager (auto: not on CUDA")
    assert result["arms"]["random"]["evaluation"]["per_category"].keys() == {"bottle", "kolektor_sdd", "screw"}
    from maskad_core.evaluation.detectors import FLOOR_METHODS, PROBE_METHODS

    assert set(result["detectors"]) == {*FLOOR_METHODS, *PROBE_METHODS}  # every detector of the study
    assert all("per_category" in d for d in result["detectors"].values())


BLOCKER = """
import sys
# None in sys.modules: `import pandas` raises ImportError and importlib.util.find_spec says absent
for name in ("scipy", "sklearn", "pandas", "pytorch_msssim", "lpips"):
    sys.modules[name] = None
"""


def test_a_dry_run_works_without_the_packages_a_bare_gpu_box_lacks(tiny_pack, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bench.gpu", "run", "--pack", str(tiny_pack),
                           "--out", str(out), "--budget-s", "120", "--dry-run", "--bootstrap", "50",
                           "--no-detectors"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = _check_record(out)
    # the library's loss computes SSIM itself, so it runs where pytorch-msssim is missing
    assert result["fallbacks"]["loss"].startswith("maskad_core.losses.ReconstructionLoss (its own SSIM")
    assert result["fallbacks"]["metrics"].startswith("numpy fallback")
    assert "detectors" not in result


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["run", "--pack", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--pack" in error and "bench.gpu pack" in error
    assert main(["pack", "--out", str(tmp_path / "p"), "--source", str(tmp_path / "none")]) == 2
    assert "--source" in capsys.readouterr().err


def test_the_committed_record_says_it_has_not_run_and_holds_no_number():
    result = json.loads((REPO / "bench" / "results" / "gpu-paper.json").read_text())
    if result["status"] != "not run":
        pytest.skip("a GPU has run it: the record holds its numbers")
    assert result == record.not_run()
    text = (REPO / "bench" / "results" / "gpu-paper.md").read_text()
    assert text == record.markdown(result) and "NOT been produced on a GPU" in text
    assert "AUROC" not in text and "images/s" not in text
    assert record.DEVICE_COMMAND in text


def test_the_book_shows_the_record_as_not_run(tmp_path):
    pytest.importorskip("sphinx")
    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        import maskad_book
    finally:
        sys.path.remove(str(REPO / "book" / "_ext"))
    subs, problems = maskad_book.bench_substitutions(str(REPO))
    assert not problems
    section = subs["bench_results"].split("**`bench/results/gpu-paper.md`**")[1].split("**`bench/results/")[0]
    assert "**not run**" in section and "AUROC" not in section
