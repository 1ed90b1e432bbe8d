"""The control for global brightness and contrast (``image_standardization=per_image``): the
loader, the model's maps and the detectors all see each image standardised by its own statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from train_fixtures import make_mvtec_tree, tiny_config

from maskad_core.data.mvtec import MVTecAD, read_image
from maskad_core.evaluation.baselines import evaluate_baseline
from maskad_core.evaluation.evaluate import reconstruct_and_map
from maskad_core.model import build_model


@pytest.fixture
def brightened_pair(tmp_path):
    """One test image and the same image 20 grey levels brighter (no pixel saturates)."""
    root = make_mvtec_tree(tmp_path / "data")
    original = root / "stripes" / "test" / "good" / "000.png"
    pixels = np.asarray(Image.open(original).convert("RGB")).astype(int)
    pixels = np.clip(pixels, 0, 230)  # room to brighten without clipping
    Image.fromarray(pixels.astype(np.uint8)).save(original)
    Image.fromarray((pixels + 20).astype(np.uint8)).save(original.with_name("001.png"))
    return root, original, original.with_name("001.png")


def test_the_control_makes_the_loader_and_the_models_map_blind_to_a_brightness_offset(
        brightened_pair):
    root, dim, bright = brightened_pair
    plain = torch.stack([read_image(p, 32) for p in (dim, bright)])
    assert (plain[1] - plain[0]).mean() == pytest.approx(20 / 255, abs=1e-3)  # it is brighter
    controlled = torch.stack([read_image(p, 32, image_standardization="per_image")
                              for p in (dim, bright)])
    torch.testing.assert_close(controlled[0], controlled[1], atol=1e-5, rtol=0)
    dataset = MVTecAD(root, categories=["stripes"], split="test", image_size=32,
                      image_standardization="per_image")
    by_path = {item["path"]: item["image"] for item in dataset}
    torch.testing.assert_close(by_path[str(dim)], controlled[0])

    config = tiny_config(root)
    model = build_model(config).eval()
    _, maps_plain = reconstruct_and_map(model, config, plain, [0, 0], torch.device("cpu"))
    _, maps_controlled = reconstruct_and_map(model, config, controlled, [0, 0], torch.device("cpu"))
    assert not torch.allclose(maps_plain[0], maps_plain[1], atol=1e-4)  # without it, they differ
    torch.testing.assert_close(maps_controlled[0], maps_controlled[1], atol=1e-5, rtol=0)


def test_under_the_control_the_brightness_probe_sees_every_image_alike(tmp_path):
    root = make_mvtec_tree(tmp_path / "data")
    _, plain = evaluate_baseline("brightness", root, image_size=32, smooth_sigma=0.0)
    _, controlled = evaluate_baseline("brightness", root, image_size=32, smooth_sigma=0.0,
                                      image_standardization="per_image")
    assert plain.score_max.std() > 0.1
    assert controlled.score_max.max() < plain.score_max.max() / 10


def test_an_unknown_control_is_refused_by_name(tmp_path):
    root = make_mvtec_tree(tmp_path / "data")
    with pytest.raises(ValueError, match="image_standardization must be one of: none, per_image"):
        MVTecAD(root, image_standardization="per_channel")
    with pytest.raises(ValueError, match="image_standardization"):
        tiny_config(root, image_standardization="always")
