"""The whole pipeline on real images: one model trained on bottle and screw together, evaluated.

No accuracy threshold (accuracy is the benchmarks' and the book's business): the test checks that
real MVTec AD images go through training, scoring and both metric families, with screw's pixel
metrics undefined because ../shared has no ground_truth for it.
"""

from __future__ import annotations

import math

import pytest
from train_fixtures import REAL_MVTEC

from maskad_core.cli.main import main
from maskad_core.evaluation.run_record import train_and_evaluate
from maskad_core.training.config import TrainConfig

pytestmark = pytest.mark.skipif(not REAL_MVTEC.is_dir(), reason=f"real MVTec AD subset not at {REAL_MVTEC}")


def test_multi_class_run_on_bottle_and_screw(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    config = TrainConfig(
        data_root=str(REAL_MVTEC), categories=["bottle", "screw"], image_size=64, patch_size=16,
        embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=2,
        decoder_num_heads=2, epochs=2, batch_size=8, warmup_epochs=1, lpips="off",
        max_train_images_per_category=24, max_test_images_per_category=16, device="cpu",
    ).validate()
    run = train_and_evaluate(config, quiet=True)
    assert run.done

    metrics = run.metrics
    data = metrics["data"]
    assert data["categories"] == ["bottle", "screw"] and data["synthetic"] is False
    assert data["train_counts"] == {"bottle": 24, "screw": 24}
    for category in ("bottle", "screw"):
        counts = data["test_counts"][category]
        assert counts["good"] > 0 and counts["defective"] > 0 and sum(counts.values()) == 16
        row = metrics["per_category"][category]
        assert all(0.0 <= row[f"image_auroc_{r}"] <= 1.0 for r in ("mean", "max", "topk"))
    bottle, screw = metrics["per_category"]["bottle"], metrics["per_category"]["screw"]
    assert 0.0 <= bottle["pixel_auroc"] <= 1.0 and 0.0 <= bottle["pixel_aupro"] <= 1.0
    assert math.isnan(screw["pixel_auroc"]) and math.isnan(screw["pixel_aupro"])
    assert screw["pixel_note"] == "no ground-truth masks for category 'screw'"
    assert metrics["mean"]["pixel_auroc"] == bottle["pixel_auroc"]
    assert all(math.isfinite(row["total"]) for row in metrics["history"])

    scores = run.scores
    assert scores.groupby("category").size().to_dict() == {"bottle": 16, "screw": 16}
    assert scores.path.str.startswith(str(REAL_MVTEC)).all()
    assert set(scores.defect_type[scores.category == "bottle"]) >= {"good", "broken_large"}

    out = tmp_path / "scored"
    assert main(["score", str(run.path), str(REAL_MVTEC / "bottle" / "test" / "contamination"),
                 "--out", str(out), "--no-heatmaps", "--category", "bottle"]) == 0
    assert len((out / "scores.csv").read_text().splitlines()) == 1 + 21
    capsys.readouterr()
