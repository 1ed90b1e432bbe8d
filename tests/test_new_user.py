"""Faults a new user hit (issue 29), each pinned by a test that failed before its fix: output
folders that destroyed data, scores that depended on the input order or an image's own values,
tracebacks where a one-line error is promised, and the smaller ones (progress, signals, NaN in
JSON, permissions, broken links, start-up time, the benchmark's default output)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from train_fixtures import make_mvtec_tree, tiny_config

from maskad_core import scoring
from maskad_core.cli.main import main
from maskad_core.evaluation import new_images, outputs
from maskad_core.training import runs

REPO = Path(__file__).resolve().parents[1]
TINY = ["image_size=32", "patch_size=8", "embed_dim=16", "depth=1", "num_heads=2",
        "decoder_embed_dim=16", "decoder_depth=1", "decoder_num_heads=2", "mlp_ratio=2",
        "epochs=1", "batch_size=4", "warmup_epochs=1", "lpips=off", "augment=flip", "device=cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, data root) of one tiny run of one category, trained once for this module."""
    base = tmp_path_factory.mktemp("new-user")
    data = make_mvtec_tree(base / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MASKAD_HOME", str(base / "home"))
        assert main(["train", "--data", str(data), "--categories", "stripes", "--quiet", *TINY]) == 0
        yield runs.run_path(tiny_config(data, epochs=1, categories=["stripes"])), data


@pytest.fixture
def run_home(trained, monkeypatch):
    monkeypatch.setenv("MASKAD_HOME", str(trained[0].parent.parent))
    return trained


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("maskad: error: ")
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _image(path: Path, seed: int = 0, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


# ------------------------------------------------------------------ 1. output folders
def test_evaluate_refuses_the_run_folder_and_a_users_metrics(run_home, tmp_path, capsys):
    run_path, _ = run_home
    before = _snapshot(run_path)
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(run_path)]) == 2
    assert "is a run folder" in _error_line(capsys)
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(run_path / "checkpoints")]) == 2
    assert "inside the run folder" in _error_line(capsys)
    assert _snapshot(run_path) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"my": "numbers"}\n')
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(mine)]) == 2
    assert "holds metrics.json, which maskad evaluate did not write" in _error_line(capsys)
    assert (mine / "metrics.json").read_text() == '{"my": "numbers"}\n'
    # a new folder, then the same folder again (a previous evaluation), and the default are fine
    fresh = tmp_path / "fresh"
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(fresh)]) == 0
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(fresh)]) == 0
    assert main(["evaluate", str(run_path), "--quiet"]) == 0
    assert (run_path / "evaluate" / "table.csv").is_file()


def test_score_refuses_a_folder_of_the_users_images_the_input_and_the_current_folder(
        run_home, tmp_path, capsys, monkeypatch):
    run_path, _ = run_home
    users = tmp_path / "p"
    _image(users / "a.png")
    (users / "scores.csv").write_text("path,score\na.png,1\n")
    before = _snapshot(users)
    assert main(["score", str(run_path), str(_image(tmp_path / "x.png")), "--out", str(users)]) == 2
    assert "holds a.png, which maskad score did not write" in _error_line(capsys)
    assert main(["score", str(run_path), str(users), "--out", str(users)]) == 2
    assert "is or holds the input" in _error_line(capsys)
    assert _snapshot(users) == before
    monkeypatch.chdir(tmp_path / "p")
    assert main(["score", str(run_path), "a.png", "--out", "."]) == 2
    assert "is the current folder" in _error_line(capsys)
    assert not list(tmp_path.glob(".*old-*")) and not list(tmp_path.glob(".*partial-*"))
    assert main(["score", str(run_path), "a.png", "--out", str(run_path / "scored")]) == 2
    assert "inside the run folder" in _error_line(capsys)


def test_a_second_scoring_into_the_same_folder_is_refused(run_home, tmp_path, capsys):
    run_path, _ = run_home
    image, out = _image(tmp_path / "x.png"), tmp_path / "out"
    with outputs.output_lock(out, "score"):  # another maskad score is writing out
        assert main(["score", str(run_path), str(image), "--out", str(out), "--quiet"]) == 2
        assert "is being written by another maskad score" in _error_line(capsys)
    assert main(["score", str(run_path), str(image), "--out", str(out), "--quiet"]) == 0
    assert not (tmp_path / ".out.lock").exists()
    # a scoring may replace its own previous output, but not once the user adds a file to it
    assert main(["score", str(run_path), str(image), "--out", str(out), "--quiet"]) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["score", str(run_path), str(image), "--out", str(out), "--quiet"]) == 2
    assert "holds notes.txt" in _error_line(capsys)


def test_output_inside_the_input_folder_is_not_scored_as_input(run_home, tmp_path):
    run_path, _ = run_home
    folder = tmp_path / "in"
    for seed in range(3):
        _image(folder / f"{seed}.png", seed)
    assert main(["score", str(run_path), str(folder), "--out", str(folder / "scored"), "--quiet"]) == 0
    assert main(["score", str(run_path), str(folder), "--out", str(folder / "scored"), "--quiet"]) == 0
    assert len(pd.read_csv(folder / "scored" / "scores.csv")) == 3
    # nor is any other scoring kept in the input folder
    assert main(["score", str(run_path), str(folder), "--out", str(folder / "again"), "--quiet"]) == 0
    assert len(pd.read_csv(folder / "again" / "scores.csv")) == 3


# ------------------------------------------------------------------ 2. results that depend on the image
def test_an_images_scores_do_not_depend_on_its_position(run_home, tmp_path):
    run_path, _ = run_home
    image, other = _image(tmp_path / "a.png", 1), _image(tmp_path / "b.png", 2)
    copy = tmp_path / "copy_of_a.png"
    copy.write_bytes(image.read_bytes())
    result = new_images.score_images(str(run_path), [image, image, other, image, copy],
                                     tmp_path / "out", heatmaps=False)
    rows = result.scores
    for column in ("score_mean", "score_max", "score_topk"):
        same = rows[column].iloc[[0, 1, 3, 4]].to_numpy()  # equal up to a batch's float rounding
        assert np.allclose(same, same[0], rtol=1e-5, atol=0), column
        assert not np.isclose(rows[column].iloc[2], same[0], rtol=1e-3, atol=0)
    alone = new_images.score_images(str(run_path), [other], tmp_path / "alone", heatmaps=False)
    assert alone.scores.score_max.iloc[0] == pytest.approx(rows.score_max.iloc[2], rel=1e-5)


def test_16_bit_images_are_scaled_by_their_declared_depth(tmp_path):
    from maskad_core.data.mvtec import read_image

    dark = np.full((16, 16), 100, dtype=np.uint16)
    one_bright = dark.copy()
    one_bright[0, 0] = 1000  # above 255: was divided by 65535, the other frame by 255
    Image.fromarray(dark).save(tmp_path / "dark.png")
    Image.fromarray(one_bright).save(tmp_path / "bright.png")
    assert Image.open(tmp_path / "dark.png").mode.startswith("I")
    a, b = read_image(tmp_path / "dark.png", 16), read_image(tmp_path / "bright.png", 16)
    assert float((a - b).abs().mean()) < 0.01
    assert abs(float(a.mean()) - 100 / 65535) < 1 / 255


def test_float_tiffs_in_0_1_are_read_as_they_are(tmp_path):
    from maskad_core.data.mvtec import read_image

    grey = np.full((16, 16), 0.6, dtype=np.float32)
    Image.fromarray(grey, mode="F").save(tmp_path / "grey.tif")
    assert Image.open(tmp_path / "grey.tif").mode == "F"
    image = read_image(tmp_path / "grey.tif", 16)
    assert abs(float(image.mean()) - 0.6) < 1 / 255


def test_image_score_leaves_out_invalid_pixels():
    maps = torch.zeros(2, 4, 4)
    maps[:, 0, :] = 100.0  # the padding row
    maps[1, 2, 2] = 3.0
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[:, 0, :] = False
    assert scoring.image_score(maps, "max", valid=valid).tolist() == [0.0, 3.0]
    assert scoring.image_score(maps, "mean", valid=valid).tolist() == [0.0, 0.25]
    assert scoring.image_score(maps, "topk", 0.1, valid=valid).tolist() == [0.0, 1.5]  # k = 2 of 12
    full = scoring.image_score(maps, "topk", 0.1, valid=torch.ones_like(valid))
    assert torch.equal(full, scoring.image_score(maps, "topk", 0.1))


def test_the_padding_of_a_non_square_image_never_scores(run_home, tmp_path, monkeypatch):
    _, data = run_home
    assert main(["train", "--data", str(data), "--categories", "stripes", "--quiet", *TINY,
                 "non_square=pad"]) == 0
    run_path = runs.run_path(tiny_config(data, epochs=1, categories=["stripes"], non_square="pad"))
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 32, 3), dtype=np.uint8))
    wide.save(tmp_path / "wide.png")
    _, valid = new_images.read_image_valid(tmp_path / "wide.png", 32, "pad")
    assert valid.shape == (32, 32) and valid.sum() == 16 * 32 and not valid[0].any()
    real = new_images.reconstruct_and_map

    def loud_padding(*args, **kwargs):
        recon, maps = real(*args, **kwargs)
        maps[:, ~valid] = 1e6  # the padding as the hottest place of the map
        return recon, maps

    monkeypatch.setattr(new_images, "reconstruct_and_map", loud_padding)
    scored = new_images.score_images(str(run_path), [tmp_path / "wide.png"], tmp_path / "out")
    row = scored.scores.iloc[0]
    assert row.score_max < 1e5 and row.score_topk < 1e5 and row.score_mean < 1e5


# ------------------------------------------------------------------ 3. one-line errors, before the work
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_device_cuda_without_cuda_is_one_line_and_status_2(command, run_home, tmp_path, capsys):
    run_path, _ = run_home
    extra = [str(_image(tmp_path / "x.png"))] if command == "score" else []
    assert main([command, str(run_path), *extra, "--out", str(tmp_path / "out"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in _error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_full_disk_during_training_is_one_line_and_leaves_no_half_file(data_root, home, capsys,
                                                                          monkeypatch):
    def full_disk(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed "
                           "writing file data/0: file write failed")

    monkeypatch.setattr(runs.torch, "save", full_disk)
    assert main(["train", "--data", str(data_root), "--categories", "stripes", "--quiet", *TINY]) == 2
    assert "check that path's permissions and free space" in _error_line(capsys)
    run_path = runs.run_path(tiny_config(data_root, epochs=1, categories=["stripes"]))
    assert not (run_path / runs.CHECKPOINT_FILE).exists()
    assert not [p for p in run_path.rglob("*.tmp")]


def test_model_widths_edited_in_config_yaml_are_one_line(run_home, tmp_path, capsys):
    run_path, _ = run_home
    edited = tmp_path / "edited"
    edited.mkdir()
    for name in (runs.CONFIG_FILE, runs.TRAINING_FILE, runs.DONE_FILE, runs.DATA_FILE):
        (edited / name).write_bytes((run_path / name).read_bytes())
    (edited / "checkpoints").mkdir()
    (edited / runs.CHECKPOINT_FILE).write_bytes((run_path / runs.CHECKPOINT_FILE).read_bytes())
    text = (edited / runs.CONFIG_FILE).read_text()
    (edited / runs.CONFIG_FILE).write_text(text.replace("embed_dim: 16", "embed_dim: 32", 1))
    assert main(["score", str(edited), str(_image(tmp_path / "x.png")), "--out", str(tmp_path / "o")]) == 2
    assert "config.yaml does not describe the model in its checkpoint" in _error_line(capsys)


def test_baseline_json_naming_a_folder_is_refused_before_fitting(data_root, tmp_path, capsys, monkeypatch):
    from maskad_core.evaluation import baselines

    monkeypatch.setattr(baselines, "evaluate_baseline", lambda *a, **k: pytest.fail("fitted first"))
    assert main(["baseline", "--data", str(data_root), "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder" in _error_line(capsys)


@pytest.mark.parametrize("override, message", [
    ("seed=1e30", "seed must be an integer in [0, 2**63), got 1000000000000000019884624838656"),
    ("eval_seed=-1", "eval_seed must be an integer in [0, 2**63), got -1"),
    ("image_size=1000000", "image_size must be at most 2048 pixels"),
])
def test_settings_out_of_range_name_the_key_and_the_limit(override, message, data_root, home, capsys):
    assert main(["train", "--data", str(data_root), "--quiet", *TINY, override]) == 2
    assert message in _error_line(capsys)
    assert not (home / "runs").exists()
