"""Distributed training: 2 gloo processes on the CPU through ``maskad train --nproc 2``."""

from __future__ import annotations

import math

import torch
from train_fixtures import make_mvtec_tree, tiny_config

from maskad_core.cli.main import main
from maskad_core.training import runs


def test_two_process_ddp_run_finishes_and_is_loadable(tmp_path, monkeypatch, capsys):
    data_root = make_mvtec_tree(tmp_path / "mvtec")
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    overrides = ["image_size=32", "patch_size=8", "embed_dim=16", "depth=1", "num_heads=2",
                 "decoder_embed_dim=16", "decoder_depth=1", "decoder_num_heads=2", "mlp_ratio=2",
                 "epochs=2", "batch_size=4", "warmup_epochs=1", "lpips=off", "augment=flip",
                 "device=cpu"]
    assert main(["train", "--nproc", "2", "--data", str(data_root), "--quiet", *overrides]) == 0

    run = runs.load_run(runs.run_path(tiny_config(data_root, epochs=2)))
    assert run.done
    metrics = run.metrics
    assert metrics["training"]["world_size"] == 2
    # each process saw half of the 16 training images per epoch; the all-reduced count is 16
    assert [row["images"] for row in metrics["history"]] == [16, 16]
    assert metrics["training"]["steps_per_epoch"] == 4  # 8 images per process, 2 per step
    assert all(math.isfinite(row["total"]) for row in metrics["history"])
    assert len(run.scores) == 12 and not math.isnan(metrics["per_category"]["stripes"]["pixel_auroc"])
    model = run.load_model()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not any(p.name.endswith(".tmp") for p in run.path.rglob("*"))
