"""Training: the loss falls, runs are complete and cached, resumption is exact, NaN stops the run."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from train_fixtures import make_mvtec_tree, tiny_config

from maskad_core.evaluation import results as results_module
from maskad_core.evaluation.evaluate import evaluate_model
from maskad_core.evaluation.results import metrics_table
from maskad_core.evaluation.run_record import train_and_evaluate
from maskad_core.losses import ReconstructionLoss
from maskad_core.masking import complementary_masks
from maskad_core.model import build_model
from maskad_core.training import epoch as epoch_module
from maskad_core.training import runs
from maskad_core.training import train as train_module
from maskad_core.training.config import TrainConfig
from maskad_core.training.train import Callbacks, TrainingDivergedError, lr_factor


class _Interrupted(Exception):
    pass


def test_multi_class_run_lowers_the_loss_and_writes_a_complete_record(data_root, home):
    config = tiny_config(data_root, epochs=4, lr=3e-3)
    run = train_and_evaluate(config, quiet=True)

    assert run.path == runs.run_path(config) and run.path.parent == home / "runs" and run.done
    history = run.history
    assert list(history.epoch) == [1, 2, 3, 4]
    assert history.total.iloc[-1] < history.total.iloc[0]
    assert {"total", "ssim", "l1", "lpips", "lr", "images_per_s"} <= set(history.columns)

    metrics = run.metrics
    assert metrics["data"]["categories"] == ["stripes", "waves"]  # one model, both categories
    assert metrics["data"]["train_counts"] == {"stripes": 8, "waves": 8}
    assert metrics["data"]["synthetic"] is False
    assert metrics["training"]["lpips_active"] is False and "off" in metrics["training"]["lpips_reason"]
    assert metrics["training"]["device"] == "cpu" and metrics["training"]["images_seen"] == 64
    assert {"python", "torch", "timm", "maskad"} <= set(metrics["versions"])
    stripes, waves = metrics["per_category"]["stripes"], metrics["per_category"]["waves"]
    for reduction in ("mean", "max", "topk"):
        assert 0.0 <= stripes[f"image_auroc_{reduction}"] <= 1.0
    assert 0.0 <= stripes["pixel_auroc"] <= 1.0 and 0.0 <= stripes["pixel_aupro"] <= 1.0
    assert math.isnan(waves["pixel_auroc"]) and math.isnan(waves["pixel_aupro"])
    assert "no ground-truth masks" in waves["pixel_note"]
    assert metrics["mean"]["pixel_auroc"] == stripes["pixel_auroc"]  # NaN left out of the mean
    assert metrics["image_auroc"] == pytest.approx(
        (stripes["image_auroc_mean"] + waves["image_auroc_mean"]) / 2)

    scores = run.scores
    assert list(scores.columns) == ["path", "category", "defect_type", "label",
                                    "score_mean", "score_max", "score_topk", "score_eq1"]
    assert len(scores) == 12 and set(scores.label) == {0, 1}
    assert (scores.score_max >= scores.score_mean).all()

    model = run.load_model()
    images = torch.rand(2, 3, 32, 32)
    masks = complementary_masks(model.num_patches, 0.75, torch.Generator().manual_seed(0))
    assert model.reconstruct(images, masks).shape == (2, 3, 32, 32)
    table = metrics_table(run.metrics)
    assert list(table.index) == ["stripes", "waves", "mean"]


def test_same_config_reuses_the_finished_run_and_a_changed_one_trains_anew(data_root, home,
                                                                           monkeypatch):
    config = tiny_config(data_root, epochs=1)
    first = train_and_evaluate(config, quiet=True)
    finished = (first.path / runs.DONE_FILE).read_text()

    def must_not_train(epoch, step):
        raise AssertionError("the training loop ran for a finished run")

    watched = Callbacks(after_step=must_not_train)
    again = train_and_evaluate(tiny_config(data_root, epochs=1, num_workers=0, device="cpu"), quiet=True,
                  callbacks=watched)
    assert again.path == first.path
    assert (again.path / runs.DONE_FILE).read_text() == finished
    with pytest.raises(AssertionError, match="training loop ran"):
        train_and_evaluate(tiny_config(data_root, epochs=1, lr=5e-4), quiet=True, callbacks=watched)
    assert runs.run_path(tiny_config(data_root, epochs=1, lr=5e-4)) != first.path


def _state(run):
    return run.load_checkpoint()["model"]


def _comparable(metrics):
    return {k: metrics[k] for k in ("per_category", "mean", "image_auroc")}


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(data_root, tmp_path, monkeypatch):
    config = tiny_config(data_root, epochs=3, augment=["crop", "rotate", "flip"])

    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "straight"))
    straight = train_and_evaluate(config, quiet=True)

    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "interrupted"))

    def stop_after_first_epoch(epoch):
        if epoch == 0:
            raise _Interrupted

    with pytest.raises(_Interrupted):  # killed at an epoch boundary
        train_and_evaluate(config, quiet=True, callbacks=Callbacks(after_epoch=stop_after_first_epoch))
    path = runs.run_path(config)
    assert not (path / runs.DONE_FILE).exists()
    assert runs.Run(path).load_checkpoint()["epoch"] == 1

    def stop_mid_second_epoch(epoch, step):
        if epoch == 1 and step == 1:
            raise _Interrupted

    with pytest.raises(_Interrupted):  # killed in the middle of an epoch
        train_and_evaluate(config, quiet=True, callbacks=Callbacks(after_step=stop_mid_second_epoch))
    assert runs.Run(path).load_checkpoint()["epoch"] == 1  # the half epoch left no trace

    resumed = train_and_evaluate(config, quiet=True)
    assert resumed.done
    a, b = _state(straight), _state(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _comparable(resumed.metrics) == _comparable(straight.metrics)
    pd.testing.assert_frame_equal(resumed.scores.drop(columns="path"),
                                  straight.scores.drop(columns="path"))
    columns = ["epoch", "total", "ssim", "l1", "lr"]
    pd.testing.assert_frame_equal(resumed.history[columns], straight.history[columns])


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(data_root, home,
                                                                               monkeypatch):
    calls = {"n": 0}

    class PoisonedLoss(ReconstructionLoss):
        def forward(self, recon, target):
            total, parts = super().forward(recon, target)
            calls["n"] += 1
            if calls["n"] == 6:  # 4 steps per epoch: epoch 2, step 2
                total = total * float("nan")
            return total, parts

    monkeypatch.setattr(train_module, "ReconstructionLoss", PoisonedLoss)
    config = tiny_config(data_root, epochs=3)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at epoch 2 step 2") as error:
        train_and_evaluate(config, quiet=True)
    assert "last good checkpoint" in str(error.value)
    path = runs.run_path(config)
    assert not (path / runs.DONE_FILE).exists()
    checkpoint = runs.Run(path).load_checkpoint()
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_restart_discards_an_unfinished_checkpoint(data_root, home, monkeypatch):
    config = tiny_config(data_root, epochs=2)

    def stop(epoch):
        raise _Interrupted

    with pytest.raises(_Interrupted):
        train_and_evaluate(config, quiet=True, callbacks=Callbacks(after_epoch=stop))
    run = train_and_evaluate(config, resume=False, quiet=True)
    assert list(run.history.epoch) == [1, 2]
    assert run.metrics["training"]["images_seen"] == 32  # both epochs trained in this call


def test_a_second_trainer_of_the_same_run_gets_a_clear_error(data_root, home):
    config = tiny_config(data_root, epochs=1)
    with runs.run_lock(runs.run_path(config)):
        with pytest.raises(runs.RunLockedError, match="being trained by another process"):
            train_and_evaluate(config, quiet=True)


def test_limits_per_category_and_evaluation_independent_of_batch_size(data_root, home):
    config = tiny_config(data_root, epochs=1, max_train_images_per_category=3,
                         max_test_images_per_category=4)
    run = train_and_evaluate(config, quiet=True)
    assert run.metrics["data"]["train_counts"] == {"stripes": 3, "waves": 3}
    assert run.scores.groupby("category").size().to_dict() == {"stripes": 4, "waves": 4}
    assert set(run.scores.label) == {0, 1}  # the subset spreads over good and defective images
    model = run.load_model()
    by_one = evaluate_model(model, tiny_config(data_root, batch_size=1), device="cpu")[1]
    by_five = evaluate_model(model, tiny_config(data_root, batch_size=5), device="cpu")[1]
    pd.testing.assert_frame_equal(by_one, by_five)


def test_learning_rate_warms_up_then_decays_to_zero():
    factors = [lr_factor(step, total_steps=100, warmup_steps=10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(factors[:9], factors[1:10], strict=True))
    assert all(a >= b for a, b in zip(factors[10:-1], factors[11:], strict=True))
    assert factors[-1] < 0.001
    assert lr_factor(0, total_steps=4, warmup_steps=0) == 1.0  # no warmup: start at the peak


def test_model_follows_the_config(data_root):
    model = build_model(tiny_config(data_root, depth=1, decoder_depth=2))
    assert (len(model.blocks), len(model.decoder_blocks)) == (1, 2)
    assert model.img_size == 32 and model.patch_size == 8


def test_worker_count_does_not_change_the_result(data_root, tmp_path, monkeypatch):
    states = []
    for workers in (0, 2):
        monkeypatch.setenv("MASKAD_HOME", str(tmp_path / f"workers{workers}"))
        config = tiny_config(data_root, epochs=1, num_workers=workers,
                             augment=["crop", "rotate", "flip"])
        states.append(_state(train_and_evaluate(config, quiet=True)))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a_run_killed_during_evaluation_is_finished_without_training_again(data_root, home,
                                                                           monkeypatch):
    config = tiny_config(data_root, epochs=1)

    def killed(*args):
        raise _Interrupted

    with pytest.raises(_Interrupted):
        train_and_evaluate(config, quiet=True, callbacks=Callbacks(before_evaluation=killed))
    assert not (runs.run_path(config) / runs.DONE_FILE).exists()
    # all epochs are in the checkpoint: no step may run again
    run = train_and_evaluate(config, quiet=True, callbacks=Callbacks(after_step=killed))
    assert run.done and list(run.history.epoch) == [1]


def test_weights_are_kept_at_the_snapshot_epochs_and_the_last_equals_the_final_model(data_root, home):
    assert runs.snapshot_epochs(40) == [1, 2, 5, 10, 20, 40]
    assert runs.snapshot_epochs(2) == [1, 2]
    assert runs.snapshot_epochs(200) == [1, 2, 5, 10, 20, 50, 100, 200]
    assert runs.snapshot_epochs(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 250, 500, 1000]
    run = train_and_evaluate(tiny_config(data_root, epochs=4, seed=7), quiet=True)
    assert run.snapshots() == [1, 2, 4]
    final, first = run.load_model(), run.load_model(epoch=1)
    last = run.load_model(epoch=4)
    for name, tensor in final.state_dict().items():
        assert torch.equal(tensor, last.state_dict()[name]), name
    assert any(not torch.equal(t, first.state_dict()[n]) for n, t in final.state_dict().items())
    with pytest.raises(FileNotFoundError, match=r"epoch 3; it has epochs \[1, 2, 4\]"):
        run.load_model(epoch=3)


def test_a_defective_image_without_its_mask_is_left_out_of_the_pixel_metrics(tmp_path, monkeypatch):
    root = make_mvtec_tree(tmp_path / "mvtec")
    (root / "stripes" / "ground_truth" / "square" / "001_mask.png").unlink()
    config = tiny_config(root)
    seen = []
    real_pixel_auroc = results_module.metric_fns.pixel_auroc
    monkeypatch.setattr(results_module.metric_fns, "pixel_auroc",
                        lambda masks, maps: seen.append(masks.shape) or real_pixel_auroc(masks, maps))
    with pytest.warns(UserWarning, match="have no mask"):
        evaluation, scores = evaluate_model(build_model(config), config, device="cpu")
    assert len(scores[scores.category == "stripes"]) == 6  # still scored for the image metrics
    assert seen == [(5, 32, 32)]  # 3 good + 2 defective with masks; not the unmasked one
    assert 0.0 <= evaluation["per_category"]["stripes"]["pixel_auroc"] <= 1.0


class _OnDevice(torch.Tensor):
    """Stands for a tensor on a GPU: every value derived from it is one too, and each time the host
    reads one (``.cpu()``, ``.item()``, ``float()``, ``bool()``, ``.tolist()``, f-strings) is counted."""

    reads = 0

    def _read(self, name, *args):
        _OnDevice.reads += 1
        return getattr(torch.Tensor, name)(self.as_subclass(torch.Tensor), *args)

    def cpu(self):
        return self._read("cpu")

    def item(self):
        return self._read("item")

    def tolist(self):
        return self._read("tolist")

    def __float__(self):
        return self._read("__float__")

    def __int__(self):
        return self._read("__int__")

    def __bool__(self):
        return self._read("__bool__")


def test_training_reads_the_device_once_per_epoch_not_once_per_step(data_root, home, monkeypatch):
    """On a GPU each read of a value waits for every queued kernel; the loop keeps losses and the
    NaN check on the device and reads them at the end of each epoch."""
    real_getitem = epoch_module.SeededItems.__getitem__

    def on_device(self, index):  # the images, and everything computed from them, "on the GPU"
        item = real_getitem(self, index)
        return {**item, "image": item["image"].as_subclass(_OnDevice)}

    steps, reads = [], {}

    def after_epoch(epoch):  # reads during the epoch, counted by its number of steps
        reads.setdefault(len(steps), []).append(_OnDevice.reads)
        steps.clear()
        _OnDevice.reads = 0

    observer = Callbacks(after_step=lambda epoch, step: steps.append(step), after_epoch=after_epoch)
    monkeypatch.setattr(epoch_module.SeededItems, "__getitem__", on_device)
    for per_category in (2, 8):  # 1 step per epoch, then 4
        _OnDevice.reads = 0
        train_and_evaluate(tiny_config(data_root, epochs=2, augment=[], max_train_images_per_category=per_category),
              quiet=True, callbacks=observer)
    assert reads == {1: [1, 1], 4: [1, 1]}  # one read per epoch, whatever the number of steps


def test_a_run_scored_differently_reuses_the_training_and_only_evaluates(data_root, home,
                                                                          monkeypatch):
    first = train_and_evaluate(tiny_config(data_root, epochs=2, map_standardization="none"), quiet=True)

    def must_not_train(epoch, step):
        raise AssertionError("the training loop ran for a run that only changes the scoring")

    rescored = train_and_evaluate(tiny_config(data_root, epochs=2, map_standardization="per_pixel",
                                 smooth_sigma=1.0, anomaly_map="l2"), quiet=True,
                     callbacks=Callbacks(after_step=must_not_train))
    assert rescored.path != first.path and rescored.done
    assert rescored.metrics["training"]["trained_in"] == first.id
    assert rescored.history.equals(first.history)
    assert rescored.snapshots() == first.snapshots()
    for key, value in first.load_weights().items():
        assert torch.equal(rescored.load_weights()[key], value)
    evaluation = rescored.metrics["evaluation"]
    assert evaluation["map_standardization"] == "per_pixel" and evaluation["anomaly_map"] == "l2"
    assert "standardised per pixel" in rescored.metrics["headline_score"]
    # eq. 1 does not depend on the scoring settings; the headline score does
    assert rescored.scores.score_eq1.equals(first.scores.score_eq1)
    assert not rescored.scores.score_max.equals(first.scores.score_max)
    # the finished original is untouched
    assert first.metrics["evaluation"]["map_standardization"] == "none"


def test_training_settings_leave_out_only_the_scoring():
    base = TrainConfig()
    assert base.training_settings() == TrainConfig(smooth_sigma=1.0, test_partitions=3,
                                                   map_standardization="none").training_settings()
    assert base.training_settings() != TrainConfig(lr=5e-4).training_settings()
    assert base.hash() != TrainConfig(smooth_sigma=1.0).hash()  # each scoring has its own folder


def test_a_broken_test_split_is_found_before_any_training(tmp_path, home):
    from maskad_core.data.mvtec import DataError

    root = make_mvtec_tree(tmp_path / "data")
    (root / "stripes" / "test" / "good" / "001.png").write_bytes(b"")  # a zero-byte test image
    steps = []
    with pytest.raises(DataError, match="001.png"):
        train_and_evaluate(tiny_config(root), quiet=True, callbacks=Callbacks(after_step=lambda e, s: steps.append(s)))
    assert steps == []
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # no run folder


def test_fused_optimizer_steps_as_the_old_one_did():
    # make_optimizer's fused AdamW against the per-tensor AdamW it replaced, same groups, 3 steps
    from maskad_core.training.train import make_optimizer

    config = TrainConfig(image_size=32, patch_size=8, embed_dim=32, num_heads=2, decoder_embed_dim=32,
                         decoder_num_heads=2, weight_decay=0.05)
    torch.manual_seed(0)
    new_model = build_model(config)
    old_model = build_model(config)
    old_model.load_state_dict(new_model.state_dict())
    start = [p.detach().clone() for p in new_model.parameters()]
    new_opt = make_optimizer(new_model, config)
    assert new_opt.defaults["fused"]
    old_opt = torch.optim.AdamW(
        [{"params": [p for p in old_model.parameters() if p.ndim > 1], "weight_decay": 0.05},
         {"params": [p for p in old_model.parameters() if p.ndim <= 1], "weight_decay": 0.0}],
        lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), foreach=False)
    for step in range(3):
        torch.manual_seed(step)
        grads = [torch.randn_like(p) for p in new_model.parameters()]
        for model, opt in ((new_model, new_opt), (old_model, old_opt)):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for new, old in zip(new_model.parameters(), old_model.parameters(), strict=True):
        assert torch.allclose(new, old, rtol=1e-5, atol=1e-7)
    assert max(float((p.detach() - q).abs().max()) for p, q in zip(new_model.parameters(), start,
                                                          strict=True)) > 1e-4  # it did move
