"""Faults found on main, each pinned by a test that failed before its fix: non-finite settings and
weights, an overwrite that deleted foreign files, private run files, runs blind to changed data,
test-split problems found after training, tracebacks for user-fixable path, device and checkpoint
problems, and the masking modes declared in one place."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from train_fixtures import make_mvtec_tree

from maskad_core import masking
from maskad_core.cli.main import main
from maskad_core.data import paths, synthetic
from maskad_core.data.mvtec import DataError
from maskad_core.training import runs, runtime, splits
from maskad_core.training import train as train_module
from maskad_core.training.config import TrainConfig

SMALL_SET = {"categories": ["pill"], "image_size": 32, "n_train": 1, "n_test_good": 1,
             "n_test_defective": 2}


# ------------------------------------------------------------------ 1. non-finite settings
@pytest.mark.parametrize("override", ["lr=inf", "lr=nan", "weight_decay=-inf", "smooth_sigma=nan",
                                      "mask_ratio=nan", "grad_clip=inf"])
def test_non_finite_settings_are_refused_naming_key_and_value(override):
    key, _, value = override.partition("=")
    config = TrainConfig().with_overrides([override])
    with pytest.raises(ValueError, match=f"{key} must be a finite number, got {value}"):
        config.validate()


# ------------------------------------------------------------------ 7. masking declared once
def test_masking_check_names_modes_ratios_and_patches():
    assert masking.check("complementary", 0.75) == 4
    assert masking.check("random", 0.75, num_patches=4) == 1
    with pytest.raises(ValueError, match="test_masking 'grid' is not one of: complementary, random"):
        masking.check("grid", 0.75, setting="test_masking")
    with pytest.raises(ValueError, match=r"valid ratios are 1 - 1/n: 0\.5, 0\.6667, 0\.75"):
        masking.check("complementary", 0.7)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\) for random masking"):
        masking.check("random", 1.0)
    with pytest.raises(ValueError, match="gives 4 views but masking=complementary has only 3 patches"):
        masking.check("complementary", 0.75, num_patches=3)
    assert masking.views_per_image("complementary", 0.5) == 2
    assert masking.views_per_image("random", 0.5) == 1


def test_config_validates_masking_through_masking_check(monkeypatch):
    calls = []
    real = masking.check
    monkeypatch.setattr(masking, "check", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    TrainConfig(test_masking="random").validate()
    assert [(a[0], k.get("setting")) for a, k in calls] == [("complementary", "masking"),
                                                            ("random", "test_masking")]
    # the test masking's views must fit the patches too, not only the training masking's
    with pytest.raises(ValueError, match="test_masking=complementary has only 4 patches"):
        TrainConfig(masking="random", test_masking="complementary", mask_ratio=0.9,
                    image_size=32).validate()
    views = []
    monkeypatch.setattr(masking, "views_per_image", lambda *a: views.append(a) or 7)
    assert TrainConfig().num_views == 7 and views == [("complementary", 0.75)]


def test_check_finite_state_names_the_first_non_finite_tensor():
    model = {"encoder.weight": torch.ones(2, 3), "encoder.bias": torch.zeros(3),
             "steps": torch.tensor(4)}  # an integer tensor is never non-finite
    checkpoint = {"epoch": 3, "model": model, "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}}}
    train_module.check_finite_state(checkpoint, "checkpoint of epoch 3")  # all finite: no error
    checkpoint["optimizer"]["state"][0]["exp_avg"][1] = float("inf")
    model["encoder.bias"][0] = float("nan")
    with pytest.raises(train_module.NonFiniteStateError,
                       match=r"checkpoint of epoch 3 not written: model\.encoder\.bias holds 1 NaN "
                             r"or infinite value\(s\) of 3 \(2 tensor\(s\) affected\)"):
        train_module.check_finite_state(checkpoint, "checkpoint of epoch 3")
    with pytest.raises(ValueError, match="lower lr"):  # a user error: one line from the command
        train_module.check_finite_state({"w": torch.full((2,), -float("inf"))}, "weights")


# ------------------------------------------------------------------ 2. overwrite keeps foreign files
def test_data_synth_overwrite_never_deletes_unrelated_files(tmp_path, capsys):
    out = tmp_path / "work"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    assert main(["data", "synth", "--out", str(out), "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert f"{out} holds files that are not a generated synthetic set (e.g. thesis.tex)" in error
    assert (out / "thesis.tex").read_text() == "keep me"


def test_a_generated_set_with_anything_added_is_not_replaced(tmp_path):
    root = synthetic.generate_synthetic(tmp_path / "set", **SMALL_SET)
    assert synthetic.foreign_entry(root) is None
    note = root / "pill" / "test" / "notes.txt"  # a stray file deep inside the set
    note.write_text("mine")
    assert synthetic.foreign_entry(root) == note
    with pytest.raises(DataError, match=r"e\.g\. pill/test/notes\.txt"):
        synthetic.generate_synthetic(root, **{**SMALL_SET, "seed": 1}, overwrite=True)
    assert note.read_text() == "mine"
    note.unlink()
    synthetic.generate_synthetic(root, **{**SMALL_SET, "seed": 1}, overwrite=True)  # only the set: replaced
    (root / "results").mkdir()  # a folder that is not one of the set's categories
    assert synthetic.foreign_entry(root) == root / "results"


# ------------------------------------------------------------------ 3. permissions of run files
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_permissions_of_a_normal_new_file(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        runs.atomic_write_text(tmp_path / "run" / "metrics.json", "{}\n")
        runs.atomic_torch_save({"w": torch.ones(2)}, tmp_path / "run" / "checkpoints" / "last.pt")
        runs.write_csv(tmp_path / "run" / "scores.csv", __import__("pandas").DataFrame({"a": [1]}))
    finally:
        os.umask(previous)
    for name in ("metrics.json", "checkpoints/last.pt", "scores.csv"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints", "metrics.json",
                                                                    "scores.csv"]


# ------------------------------------------------------------------ 4. the data is part of a run's id
def _tree(tmp_path: Path) -> Path:
    return make_mvtec_tree(tmp_path / "data", n_train=4, n_good=2, n_defective=2)


def test_fingerprint_counts_the_files_and_changes_with_them(tmp_path):
    root = _tree(tmp_path)
    config = TrainConfig(data_root=str(root))
    first = splits.data_fingerprint(config)
    # stripes: 4 train + 2 good + 2 defective + 2 masks; waves: the same without masks
    assert first["files"] == 18 and first["categories"] == {"stripes": 10, "waves": 8}
    assert len(first["digest"]) == 64 and splits.data_fingerprint(config) == first
    only = splits.data_fingerprint(TrainConfig(data_root=str(root), categories=["waves"]))
    assert only["categories"] == {"waves": 8} and only["digest"] != first["digest"]
    (root / "license.txt").write_text("changed")  # not an image of a category: not data
    (root / "waves" / "train" / "good" / ".DS_Store").write_bytes(b"x")
    assert splits.data_fingerprint(config)["digest"] == first["digest"]
    image = root / "waves" / "train" / "good" / "000.png"
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # a copy (new modification times, same bytes) is the same data
    moved = splits.data_fingerprint(TrainConfig(data_root=str(copy)))
    assert moved["digest"] == first["digest"]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # touched only
    assert splits.data_fingerprint(config)["digest"] == first["digest"]
    pixels = bytearray(image.read_bytes())
    image.write_bytes(bytes(pixels[:-1]) + bytes([pixels[-1] ^ 1]))  # rewritten: one byte differs
    assert splits.data_fingerprint(config)["digest"] != first["digest"]


def test_changed_data_is_another_run(tmp_path, home):
    root = _tree(tmp_path)
    config = TrainConfig(data_root=str(root))
    before = runs.run_path(config)
    (root / "stripes" / "train" / "good" / "003.png").unlink()  # fewer training images
    fewer = runs.run_path(config)
    shutil.rmtree(root / "waves" / "test" / "square")  # a defect type removed
    assert len({before, fewer, runs.run_path(config)}) == 3
    assert config.hash() == TrainConfig(data_root=str(root)).hash()  # the checkpoints' hash is kept


def _finished_run(config: TrainConfig, fingerprint: dict | None) -> Path:
    path = runs.run_path(config)
    runs.atomic_write_text(path / runs.CONFIG_FILE, config.to_yaml())
    if fingerprint is not None:
        runs.write_data_record(path, fingerprint)
    runs.write_training_record(path, {"epochs": config.epochs}, {}, [{"epoch": 1}])
    runs.atomic_write_text(path / runs.DONE_FILE, "done\n")
    return path


def test_a_twin_must_have_been_trained_on_the_same_data(tmp_path, home):
    root = _tree(tmp_path)
    trained = TrainConfig(data_root=str(root), epochs=1)
    rescored = TrainConfig(data_root=str(root), epochs=1, score_reduction="mean")
    fingerprint = splits.data_fingerprint(trained)
    assert runs.find_trained_twin(rescored) is None
    legacy = _finished_run(trained, None)  # a run without data.json is not a twin
    assert runs.find_trained_twin(rescored) is None
    runs.write_data_record(legacy, fingerprint)
    assert runs.read_data_record(legacy) == fingerprint
    assert runs.find_trained_twin(rescored).path == legacy
    assert runs.find_trained_twin(rescored, fingerprint).path == legacy
    copy = runs.run_path(rescored)
    runs.copy_training(legacy, copy)  # a twin's training, copied with its data record
    assert runs.read_data_record(copy) == fingerprint
    (root / "waves" / "train" / "good" / "000.png").unlink()  # the data changed since
    assert runs.find_trained_twin(rescored) is None


# ------------------------------------------------------------------ 5. the test split checked first
def test_check_data_finds_empty_and_unreadable_images_in_both_splits(tmp_path):
    root = _tree(tmp_path)
    config = TrainConfig(data_root=str(root))
    assert splits.check_data(config) == root
    (root / "stripes" / "test" / "good" / "001.png").write_bytes(b"")
    (root / "waves" / "train" / "good" / "002.png").write_bytes(b"not an image at all")
    (root / "stripes" / "ground_truth" / "square" / "000_mask.png").write_bytes(b"")
    with pytest.raises(DataError) as caught:
        splits.check_data(config)
    message = str(caught.value)
    assert message.startswith(f"3 image file(s) under {root} cannot be read")
    assert "stripes/test/good/001.png (empty file, 0 bytes)" in message
    assert "waves/train/good/002.png (UnidentifiedImageError" in message
    assert "stripes/ground_truth/square/000_mask.png (empty file, 0 bytes)" in message


def test_check_data_names_ten_bad_files_then_counts_and_finds_a_missing_test_folder(tmp_path):
    root = _tree(tmp_path)
    for index in range(4, 16):
        (root / "waves" / "train" / "good" / f"{index:03d}.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"12 image file\(s\).*: waves/train/good/004\.png .*"
                                        r"good/013\.png \(empty file, 0 bytes\); and 2 more\. Replace") \
            as caught:
        splits.check_data(TrainConfig(data_root=str(root), categories=["waves"]))
    assert "014.png" not in str(caught.value)
    shutil.rmtree(root / "stripes" / "test")
    with pytest.raises(DataError, match="category 'stripes' has no test/ folder"):
        splits.check_data(TrainConfig(data_root=str(root), categories=["stripes"]))


def test_check_data_reads_headers_only(tmp_path, monkeypatch):
    from PIL import ImageFile

    root = _tree(tmp_path)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    splits.check_data(TrainConfig(data_root=str(root)))
    assert decoded == []


# ------------------------------------------------------------------ 6. one-line user errors
def test_writable_dir_creates_or_names_the_path_and_the_fix(tmp_path):
    made = paths.writable_dir(tmp_path / "a" / "b", "the runs folder")
    assert made.is_dir()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(paths.UserPathError, match=f"the runs folder {afile} is a file, not a folder"):
        paths.writable_dir(afile, "the runs folder")
    with pytest.raises(paths.UserPathError, match=f"cannot be created \\({afile} is a file\\): set "
                                                  "MASKAD_HOME to a folder you can write"):
        paths.writable_dir(afile / "sub", "the runs folder")
    assert issubclass(paths.UserPathError, ValueError)  # the command line prints it on one line


def test_writable_dir_on_a_read_only_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        can_write = os.access(locked, os.W_OK)  # root writes through chmod
        if can_write:
            assert paths.writable_dir(locked / "runs", "the runs folder").is_dir()
            assert os.geteuid() == 0 or os.access(locked, os.W_OK)
        else:
            with pytest.raises(paths.UserPathError, match="cannot be created .*Permission denied"):
                paths.writable_dir(locked / "runs", "the runs folder")
            with pytest.raises(paths.UserPathError, match=f"{locked} is not writable by this user"):
                paths.writable_dir(locked, "the runs folder")
            with pytest.raises(paths.UserPathError, match="run folder"):
                with runs.run_lock(locked / "abc"):
                    pass
    finally:
        locked.chmod(0o755)


def test_a_home_that_is_a_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    assert paths.ensure_home() == tmp_path / "home" and (tmp_path / "home" / "runs").is_dir()
    (tmp_path / "taken").write_text("x")
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "taken"))
    with pytest.raises(paths.UserPathError, match=r"maskad's home folder \(MASKAD_HOME\) .*taken "
                                                  "is a file, not a folder"):
        paths.ensure_home()
    with pytest.raises(paths.UserPathError, match="taken is a file"):
        with runs.run_lock(paths.runs_dir() / "abc"):
            pass


def test_unknown_and_absent_devices_are_named(monkeypatch):
    with pytest.raises(ValueError, match="device 'nosuch' is not a known device: device must be one "
                                         "of auto, cpu, cuda, mps or cuda:N"):
        runtime.select_device("nosuch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name in ("cuda", "cuda:1", "mps"):
        with pytest.raises(ValueError, match=f"device '{name}' was requested but .* is not "
                                             "available: no such device is available here; use "
                                             "device=cpu or device=auto"):
            runtime.select_device(name)
    assert runtime.select_device("cpu") == torch.device("cpu")


def test_more_gpus_than_the_machine_has_are_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.select_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="has 2 CUDA device.*no such device is available here"):
        runtime.select_device("cuda:2")


def test_a_truncated_checkpoint_names_the_file_and_the_fix(tmp_path):
    run = runs.Run(tmp_path / "run")
    checkpoint = run.checkpoint_path
    runs.atomic_torch_save({"epoch": 2, "model": {"w": torch.ones(100)}}, checkpoint)
    assert runs.load_checkpoint_file(checkpoint)["epoch"] == 2
    whole = checkpoint.read_bytes()
    for size in (0, 40, len(whole) // 2, len(whole) - 20):
        checkpoint.write_bytes(whole[:size])
        for load in (lambda: runs.load_checkpoint_file(checkpoint), run.load_checkpoint,
                     run.load_weights):
            with pytest.raises(runs.CheckpointError, match=f"checkpoint {checkpoint} is truncated or "
                                                           "corrupt .*maskad train ... --restart"):
                load()
    assert issubclass(runs.CheckpointError, ValueError)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runs.load_checkpoint_file(tmp_path / "absent.pt")
