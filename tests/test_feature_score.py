"""The encoder-token nearest-neighbour score (beyond the paper): every patch encoded once, a training
image's own tokens at distance zero, and the result in the shape of every other evaluation."""

from __future__ import annotations

import torch
from train_fixtures import tiny_config

from maskad_core.evaluation.feature_score import evaluate_feature_nn, nearest_distances
from maskad_core.evaluation.results import FRAME_COLUMNS
from maskad_core.evaluation.run_record import train_and_evaluate
from maskad_core.masking import complementary_masks
from maskad_core.model import build_model


def test_each_patch_is_encoded_by_the_view_that_shows_it(data_root):
    model = build_model(tiny_config(data_root)).eval()
    images = torch.rand(2, 3, 32, 32)
    masks = complementary_masks(model.num_patches, 0.75, torch.Generator().manual_seed(1))
    tokens = model.encode_patches(images, masks)
    assert tokens.shape == (2, model.num_patches, model.norm.normalized_shape[0])
    for view in range(masks.shape[0]):  # one view alone: its visible patches' tokens are the same
        alone = model.encode_patches(images, masks[view:view + 1])
        shown = ~masks[view]
        torch.testing.assert_close(alone[:, shown], tokens[:, shown])
        assert not alone[:, ~shown].any()  # patches that view hides are not encoded by it


def test_nearest_distances_are_exact_and_zero_for_a_bank_member():
    bank = torch.randn(500, 8)
    queries = torch.cat([bank[:3], torch.randn(4000, 8)])
    brute = torch.cdist(queries, bank).square().amin(dim=1)
    torch.testing.assert_close(nearest_distances(queries, bank), brute, atol=1e-4, rtol=1e-4)
    assert torch.allclose(nearest_distances(bank[:3], bank), torch.zeros(3), atol=1e-4)


def test_the_feature_score_has_the_evaluation_shape(data_root, home):
    run = train_and_evaluate(tiny_config(data_root, epochs=1), quiet=True)
    evaluation, frame = evaluate_feature_nn(run)
    assert list(frame.columns) == list(FRAME_COLUMNS) and frame.score_eq1.isna().all()
    assert list(evaluation["per_category"]) == ["stripes", "waves"]
    assert len(frame) == len(run.scores)
    assert "beyond the paper" in evaluation["evaluation"]["score"]
