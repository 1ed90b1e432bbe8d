"""The maskad command line: every command on tiny data, --help everywhere, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from train_fixtures import tiny_config

from maskad_core.cli.main import build_parser, main
from maskad_core.training import runs
from maskad_core.training.config import FIELD_NAMES

REPO = Path(__file__).resolve().parents[1]
TINY = ["image_size=32", "patch_size=8", "embed_dim=16", "depth=1", "num_heads=2",
        "decoder_embed_dim=16", "decoder_depth=1", "decoder_num_heads=2", "mlp_ratio=2",
        "epochs=1", "batch_size=4", "warmup_epochs=1", "lpips=off", "augment=flip", "device=cpu"]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("maskad: error: ")
    return err


def test_train_evaluate_score_on_tiny_data(data_root, home, tmp_path, capsys):
    assert main(["train", "--data", str(data_root), "--categories", "stripes,waves", "--quiet",
                 *TINY]) == 0
    config = tiny_config(data_root, epochs=1, categories=["stripes", "waves"])
    run_path = runs.run_path(config)
    assert (run_path / runs.DONE_FILE).is_file()

    assert main(["evaluate", run_path.name[:8], "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "image_auroc_mean" in printed and "\nmean " in printed
    assert "waves: no ground-truth masks" in printed
    table = pd.read_csv(run_path / "evaluate" / "table.csv", index_col=0)
    assert list(table.index) == ["stripes", "waves", "mean"]
    evaluation = json.loads((run_path / "evaluate" / "metrics.json").read_text())
    # the same model, data and eval seed give the training run's own numbers
    assert evaluation["per_category"] == json.loads(
        (run_path / runs.METRICS_FILE).read_text())["per_category"]

    # evaluation settings change without retraining; training settings are refused
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(tmp_path / "ssim"),
                 "anomaly_map=ssim", "smooth_sigma=1"]) == 0
    ssim = json.loads((tmp_path / "ssim" / "metrics.json").read_text())
    assert ssim["evaluation"]["overrides"] == {"anomaly_map": "ssim", "smooth_sigma": 1.0}
    assert ssim["evaluation"]["anomaly_map"] == "ssim"
    ssim_scores = pd.read_csv(tmp_path / "ssim" / "scores.csv")
    assert not ssim_scores.score_mean.equals(pd.read_csv(run_path / runs.SCORES_FILE).score_mean)
    capsys.readouterr()
    assert main(["evaluate", str(run_path), "lr=0.1"]) == 2
    assert "lr would change the trained model" in _error_line(capsys)
    assert main(["evaluate", str(run_path), "masking=random"]) == 2
    assert "masking would change the trained model" in _error_line(capsys)

    # test-time masking is an evaluation setting: a complementary model scored with random masks
    assert main(["evaluate", str(run_path), "--quiet", "--out", str(tmp_path / "random"),
                 "test_masking=random", "test_partitions=2"]) == 0
    crossed = json.loads((tmp_path / "random" / "metrics.json").read_text())
    assert crossed["evaluation"]["test_masking"] == "random"
    assert crossed["evaluation"]["overrides"] == {"test_masking": "random", "test_partitions": 2}
    assert not pd.read_csv(tmp_path / "random" / "scores.csv").score_eq1.equals(
        pd.read_csv(run_path / runs.SCORES_FILE).score_eq1)

    out = tmp_path / "scored"
    single = data_root / "waves" / "test" / "square" / "000.png"
    capsys.readouterr()
    # maps standardised per category: a run of two categories must be told which one
    assert main(["score", str(run_path), str(single), "--out", str(out)]) == 2
    assert "name the images' category with --category (one of stripes, waves)" in _error_line(capsys)
    assert main(["score", str(run_path), str(single), "--out", str(out), "--category", "gears"]) == 2
    assert "category 'gears' is not one the run was trained on (stripes, waves)" in _error_line(capsys)
    assert not out.exists() or not any(out.iterdir())
    assert main(["score", str(run_path), str(data_root / "stripes" / "test"), str(single),
                 "--out", str(out), "--category", "stripes"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 7  # 6 images in the folder (masks excluded) + 1 named
    assert {"path", "score_mean", "score_max", "score_topk", "heatmap"} <= set(scores.columns)
    pictures = sorted(out.glob("*.png"))
    assert len(pictures) == 7 and all(p.stat().st_size > 1000 for p in pictures)


def test_train_without_data_uses_the_embedded_synthetic_set(data_root, home, monkeypatch):
    from maskad_core.training import splits

    monkeypatch.setattr(splits, "default_data_root", lambda *a, **k: data_root)
    assert main(["train", "--quiet", *TINY]) == 0
    run = runs.load_run(runs.run_path(tiny_config(None, epochs=1)))
    assert run.config.data_root is None
    assert run.metrics["data"]["synthetic"] is True
    assert run.metrics["data"]["root"] == str(data_root)


def test_data_synth_writes_the_synthetic_set(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--seed", "1", "--image-size", "32"]) == 0
    assert str(out) in capsys.readouterr().out
    categories = [p for p in out.iterdir() if (p / "train" / "good").is_dir()]
    assert len(categories) >= 10
    assert json.loads((out / "metadata.json").read_text())["seed"] == 1


@pytest.mark.parametrize("argv, message", [
    (["train", "--categories", "bottel", "--data", "{data}"], "unknown category 'bottel'"),
    (["train", "--data", "{data}", "epoch=3"], "unknown config key 'epoch'; did you mean epochs"),
    (["train", "--data", "{data}", "mask_ratio=0.7"], "valid ratios are 1 - 1/n: 0.5, 0.6667, 0.75"),
    (["train", "--data", "{data}", "lr=fast"], "bad value 'fast' for lr"),
    (["train", "--data", "/no/such/folder"], "data folder /no/such/folder does not exist"),
    (["train", "--config", "/no/such.yaml"], "config file /no/such.yaml does not exist"),
    (["train", "--data", "{data}", "--resume", *TINY], "nothing to resume"),
    (["train", "--data", "{data}", "--nproc", "2", "--categories", "nut"], "unknown category 'nut'"),
    (["train", "--data", "{data}", "--nproc", "0"], "--nproc must be >= 1"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["evaluate", "feedbeef"], "no run 'feedbeef'"),
    (["evaluate", "{data}"], "is not a run folder"),
    (["score", "feedbeef", "x.png", "--out", "o"], "no run 'feedbeef'"),
    (["score", "x.png"], "required: IMAGE_OR_FOLDER, --out"),
    (["data", "synth"], "required: --out"),
    (["fly"], "invalid choice: 'fly'"),
])
def test_wrong_arguments_give_one_line_and_status_2(argv, message, data_root, home, capsys):
    argv = [a.replace("{data}", str(data_root)) for a in argv]
    assert main(argv) == 2
    assert message in _error_line(capsys)
    assert not (home / "runs").exists()  # nothing written for a refused command


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "maskad_core.cli.main", "train", "--data", str(tmp_path), "mask_ratio=0.7"],
        cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                                                       "MASKAD_HOME": str(tmp_path / "home")})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "mask_ratio=0.7" in result.stderr


def test_python_dash_m_maskad_core_is_the_command_torchrun_launches(tmp_path):
    """``torchrun -m maskad_core train ...`` (what ``maskad train --nproc N`` runs) reaches the CLI."""
    result = subprocess.run([sys.executable, "-m", "maskad_core", "train", "--help"], cwd=REPO,
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0 and result.stdout.startswith("usage: maskad train")


def test_maskad_bench_runs_the_benchmark_beside_the_package(capfd):
    """The package never imports bench/: ``maskad bench ARGS`` runs ``python -m bench ARGS``."""
    assert main(["bench", "--help"]) == 0
    assert capfd.readouterr().out.startswith("usage: python -m bench")
    assert "bench" in _subparsers(build_parser()).choices  # listed in maskad --help
    assert main(["bench", "--no-such-option"]) == 2  # the benchmark's own usage error


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")


@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["score"], ["baseline"], ["data"],
                                     ["data", "synth"]])
def test_help_lists_every_option_with_its_default(command, capsys):
    text = _help(command, capsys)
    parser = build_parser()
    for name in command:
        parser = _subparsers(parser).choices[name]
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert options or command == ["data"]
    flat = " ".join(text.split())
    for action in options:
        assert action.option_strings[-1] in text
        if not action.required:
            assert "(default: " in flat.split(action.option_strings[-1], 2)[-1]
    if command == ["train"]:
        for key in FIELD_NAMES:
            assert f"  {key}=" in text
        assert "mask_ratio=0.75" in text and "masking=complementary" in text


def test_overrides_may_sit_between_options():
    from maskad_core.cli.main import parse_args

    args = parse_args(["train", "epochs=3", "--quiet", "lr=0.01", "--data", "d"])
    assert args.overrides == ["epochs=3", "lr=0.01"] and args.quiet and args.data == "d"
    args = parse_args(["evaluate", "RUN", "--quiet", "anomaly_map=ssim"])
    assert args.run == "RUN" and args.overrides == ["anomaly_map=ssim"]
