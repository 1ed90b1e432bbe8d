"""Faults a new user hit (issue 29), each pinned by a test that failed before its fix: output
folders that destroyed data, scores that depended on the input order or an image's own values,
tracebacks where a one-line error is promised, and the smaller ones (progress, signals, NaN in
JSON, permissions, broken links, start-up time, the benchmark's default output)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
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


# ------------------------------------------------------------------ 4. the smaller faults
def test_the_readme_says_what_identifies_a_run(tmp_path):
    from maskad_core.training.config import TrainConfig

    first, second = make_mvtec_tree(tmp_path / "a"), tmp_path / "b"
    second.mkdir()
    for path in sorted(first.rglob("*")):
        target = second / path.relative_to(first)
        target.mkdir(exist_ok=True) if path.is_dir() else target.write_bytes(path.read_bytes())
    one, two = (TrainConfig(data_root=str(root)) for root in (first, second))
    from maskad_core.training.splits import data_fingerprint

    assert data_fingerprint(one)["digest"] == data_fingerprint(two)["digest"]  # the same images
    assert runs.run_id(one) != runs.run_id(two)  # at another path: another run, as the README says
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "a copy of the same images at another path is another run" in readme
    assert "a copy of the same images on another disk or machine is the same run" not in readme


def test_score_shows_progress_only_on_a_terminal(run_home, tmp_path, capsys, monkeypatch):
    run_path, _ = run_home
    images = [str(_image(tmp_path / f"{i}.png", i)) for i in range(6)]
    assert main(["score", str(run_path), *images, "--out", str(tmp_path / "log"), "--no-heatmaps"]) == 0
    assert "image" not in capsys.readouterr().err  # stderr is not a terminal: no bar in the log
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["score", str(run_path), *images, "--out", str(tmp_path / "tty"), "--no-heatmaps"]) == 0
    assert "score:" in capsys.readouterr().err  # the bar, on a terminal
    assert main(["score", str(run_path), *images, "--out", str(tmp_path / "q"), "--no-heatmaps",
                 "--quiet"]) == 0
    assert "image" not in capsys.readouterr().err


def test_sigterm_while_scoring_removes_the_partial_output(run_home, tmp_path, capsys, monkeypatch):
    import signal

    run_path, _ = run_home

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal arrives first
        pytest.fail("SIGTERM was not turned into an exception")

    monkeypatch.setattr(new_images, "_score_batches", terminated)
    out = tmp_path / "out"
    assert main(["score", str(run_path), str(_image(tmp_path / "x.png")), "--out", str(out)]) == 143
    assert "maskad: terminated" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["x.png"]
    assert signal.getsignal(signal.SIGTERM) is not None  # main put the previous handler back


def test_sigterm_while_a_study_executes_removes_its_running_folder(tmp_path, monkeypatch):
    import signal

    from maskad_core.cli import main as cli_main
    from maskad_core.study import runner

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(runner, "execute_notebook", terminated)
    previous = signal.signal(signal.SIGTERM, cli_main._terminate)
    try:
        result = runner.StudyResult(root=tmp_path, executed_dir=tmp_path / "book" / "executed",
                                    html_dir=None)
        with pytest.raises(cli_main.Terminated):
            runner.execute_edition("cpu", {}, {"01": tmp_path / "01.md"}, result, whole=False,
                                   log=lambda line: None)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list((tmp_path / "book").iterdir()) == []
    ignored = subprocess.run(["git", "check-ignore", "-q", "book/.executed-running-x1/01.ipynb"],
                             cwd=REPO, check=False)
    assert ignored.returncode == 0


def test_scorings_output_folder_follows_the_umask(run_home, tmp_path):
    run_path, _ = run_home
    previous = os.umask(0o002)
    try:
        new_images.score_images(str(run_path), [_image(tmp_path / "x.png")], tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o775


def test_json_safe_writes_non_finite_numbers_as_null(tmp_path):
    from maskad_core.training.json_safe import json_safe

    value = {"a": float("nan"), "b": [np.float32("inf")], "c": np.float64(1.5), "d": {"e": -float("inf")}}
    assert json.dumps(json_safe(value), allow_nan=False) == '{"a": null, "b": [null], "c": 1.5, "d": {"e": null}}'


def test_a_broken_link_gets_a_line_in_skipped_csv(run_home, tmp_path):
    run_path, _ = run_home
    folder = tmp_path / "in"
    _image(folder / "a.png")
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert main(["score", str(run_path), str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert skipped.path.tolist() == [str(folder / "gone.png")]
    assert "broken symbolic link" in skipped.reason.iloc[0]
    assert len(pd.read_csv(tmp_path / "out" / "scores.csv")) == 1


def test_maskad_help_imports_no_torch_and_documents_the_exit_statuses():
    probe = ("import sys\nfrom maskad_core.cli.main import main\ntry:\n    main(['--help'])\n"
             "except SystemExit:\n    pass\nprint('torch imported:', 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("torch imported: False")
    text = " ".join(result.stdout.split())
    assert "exit status: 0 done; 1 maskad score could not read some images" in text
    assert "2 a user error, one line on stderr" in text


def test_each_commands_line_in_maskad_help_is_its_parsers():
    from maskad_core.cli.main import COMMANDS, build_parser

    full = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    listed = {action.dest: action.help for action in full._choices_actions}
    assert listed == {name: summary for name, (summary, _) in COMMANDS.items()}


def test_python_dash_m_bench_writes_to_a_git_ignored_folder_by_default():
    from bench.perf.__main__ import LOCAL_DIR, RESULTS_DIR, build_parser

    assert build_parser().parse_args([]).out == LOCAL_DIR == RESULTS_DIR / "local"
    ignored = subprocess.run(["git", "check-ignore", "-q", str(LOCAL_DIR / "cpu.json")], cwd=REPO,
                             check=False)
    assert ignored.returncode == 0
    assert build_parser().parse_args(["--out", str(RESULTS_DIR)]).out == RESULTS_DIR
