"""The run keeps what it scores with: saved map statistics, refusal of unfinished runs, scoring
new images that never mixes outputs, and one evaluation path for the model and the detectors."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from train_fixtures import make_mvtec_tree, tiny_config

from maskad_core.cli.main import main
from maskad_core.data.mvtec import MVTecAD
from maskad_core.evaluation.baselines import evaluate_baseline
from maskad_core.evaluation.new_images import score_images
from maskad_core.evaluation.results import FRAME_COLUMNS, score_split
from maskad_core.evaluation.run_record import (
    STATISTICS_FILE,
    RunUnfinishedError,
    evaluate_run,
    load_statistics,
    train_and_evaluate,
)
from maskad_core.training import runs
from maskad_core.training.train import Callbacks


class _Stop(Exception):
    pass


@pytest.fixture
def own_data(tmp_path):
    """A data tree this test may delete from (the module-wide one is shared)."""
    return make_mvtec_tree(tmp_path / "own")


def test_a_finished_run_keeps_its_map_statistics_and_scoring_uses_them(own_data, home):
    run = train_and_evaluate(tiny_config(own_data, epochs=1), quiet=True)
    saved = load_statistics(run.path, run.config)
    assert (run.path / STATISTICS_FILE).is_file() and saved.categories == ["stripes", "waves"]
    before, _ = evaluate_run(run)
    scored_before = score_images(run, [own_data / "stripes" / "test"], home / "out_before",
                                 category="stripes", heatmaps=False)
    for category in ("stripes", "waves"):
        shutil.rmtree(own_data / category / "train")  # the training images are gone
    after, scores_after = evaluate_run(run)
    scored_after = score_images(run, [own_data / "stripes" / "test"], home / "out_after",
                                category="stripes", heatmaps=False)
    assert json.dumps(after["per_category"]) == json.dumps(before["per_category"])  # NaN alike
    pd.testing.assert_frame_equal(scores_after, run.scores, check_dtype=False)  # as recorded
    pd.testing.assert_frame_equal(scored_after.scores, scored_before.scores)
    assert "saved statistics" in after["evaluation"]["map_statistics"]


def test_evaluating_on_other_data_uses_the_runs_statistics_unless_asked_to_refit(data_root, home,
                                                                               tmp_path):
    run = train_and_evaluate(tiny_config(data_root, epochs=1), quiet=True)
    other = make_mvtec_tree(tmp_path / "other", seed=5)
    kept, _ = evaluate_run(run, other)
    refit, _ = evaluate_run(run, other, refit_statistics=True)
    assert "saved statistics" in kept["evaluation"]["map_statistics"]
    assert str(other) in refit["evaluation"]["map_statistics"]
    # the other data's own statistics give other standardised maps, hence other max scores
    assert json.dumps(kept["per_category"]) != json.dumps(refit["per_category"])


def test_an_unfinished_run_is_refused_unless_partial_is_asked_for(data_root, home, tmp_path,
                                                                  capsys):
    config = tiny_config(data_root, epochs=3)

    def stop(epoch):
        if epoch == 0:
            raise _Stop

    with pytest.raises(_Stop):
        train_and_evaluate(config, quiet=True, callbacks=Callbacks(after_epoch=stop))
    path = runs.run_path(config)
    with pytest.raises(RunUnfinishedError, match=r"unfinished \(epoch 1 of 3\).*--partial"):
        evaluate_run(path)
    with pytest.raises(RunUnfinishedError, match="epoch 1 of 3"):
        score_images(path, [data_root / "stripes" / "test"], tmp_path / "out", category="stripes")
    assert main(["evaluate", str(path), "--quiet"]) == 2
    assert "epoch 1 of 3" in capsys.readouterr().err
    metrics, _ = evaluate_run(path, partial=True)
    assert metrics["partial"] == "partial: epoch 1 of 3" and metrics["epoch"] == 1
    assert main(["evaluate", str(path), "--partial", "--quiet"]) == 0
    assert "partial: epoch 1 of 3" in capsys.readouterr().out


def test_score_scores_every_readable_image_lists_the_rest_and_never_mixes_outputs(
        data_root, home, tmp_path, capsys):
    run = train_and_evaluate(tiny_config(data_root, epochs=1), quiet=True)
    images = tmp_path / "images"
    shutil.copytree(data_root / "stripes" / "test" / "good", images)
    (images / "broken.png").write_bytes(b"not a png")
    (images / "empty.png").write_bytes(b"")
    out = tmp_path / "scored"
    old = tmp_path / "old.png"  # a previous scoring in out (scores.csv and PNGs of a user's are refused)
    shutil.copy(data_root / "waves" / "test" / "square" / "000.png", old)
    assert main(["score", str(run.path), str(old), "--out", str(out), "--category", "stripes"]) == 0
    assert (out / "0000_old.png").exists()
    old.unlink()
    capsys.readouterr()
    status = main(["score", str(run.path), str(images), "--out", str(out), "--category", "stripes"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "broken.png" in printed and "empty.png" in printed
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 3 and str(old) not in set(scores.path)
    assert not (out / "0000_old.png").exists()  # the older scoring went as a whole
    assert set(pd.read_csv(out / "skipped.csv").path.map(lambda p: p.rsplit("/", 1)[1])) == {
        "broken.png", "empty.png"}
    assert not list(tmp_path.glob(".scored.*"))  # no temporary folder left behind


@pytest.mark.parametrize("problem", ["file", "foreign"])
def test_score_checks_out_before_any_work(problem, data_root, home, tmp_path, capsys):
    run = train_and_evaluate(tiny_config(data_root, epochs=1), quiet=True)
    out = tmp_path / "out"
    if problem == "file":
        out.write_text("keep me")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    status = main(["score", str(run.path), str(data_root / "stripes" / "test"), "--out", str(out),
                   "--category", "stripes"])
    assert status == 2
    assert str(out) in capsys.readouterr().err
    kept = out if problem == "file" else out / "notes.txt"
    assert kept.read_text() == "keep me"


def test_evaluate_refuses_an_unwritable_out_before_scoring(data_root, home, tmp_path, capsys):
    run = train_and_evaluate(tiny_config(data_root, epochs=1), quiet=True)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["evaluate", str(run.path), "--out", str(blocker / "sub"), "--quiet"]) == 2
    assert str(blocker) in capsys.readouterr().err


def test_the_model_and_a_detector_give_frames_of_the_same_columns_through_one_function(
        data_root, home, monkeypatch):
    from maskad_core.evaluation import baselines, evaluate

    calls = []
    real = score_split

    def watched(*args, **kwargs):
        calls.append(kwargs.get("eq1") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "score_split", watched)
    monkeypatch.setattr(baselines, "score_split", watched)
    run = train_and_evaluate(tiny_config(data_root, epochs=1, max_test_images_per_category=None), quiet=True)
    model_scores = run.scores
    _, detector_scores = evaluate_baseline("gaussian", data_root, image_size=32)
    assert calls == [True, False]  # the model with eq. 1, the detector without, one function
    assert list(model_scores.columns) == list(detector_scores.columns) == list(FRAME_COLUMNS)
    assert detector_scores.score_eq1.isna().all() and model_scores.score_eq1.notna().all()


def test_score_split_counts_pixel_metrics_only_where_masks_exist(data_root):
    dataset = MVTecAD(data_root, split="test", image_size=32)
    maps = torch.stack([dataset[i]["mask"][0] for i in range(len(dataset))]).float()
    masks = maps.bool()
    scored = score_split(dataset.samples, maps, masks, headline="max")
    stripes, waves = scored.per_category["stripes"], scored.per_category["waves"]
    assert stripes["pixel_auroc"] == 1.0 and stripes["image_auroc_max"] == 1.0
    assert waves["pixel_auroc"] != waves["pixel_auroc"]  # NaN: waves has no masks
    assert scored.mean["image_auroc_max"] == pytest.approx(
        (stripes["image_auroc_max"] + waves["image_auroc_max"]) / 2)
    assert "no reconstruction" in stripes["image_note"]
