"""ReconstructionLoss: SSIM against scikit-image, L1, weights, and every LPIPS path."""

import warnings

import numpy as np
import pytest
import torch
import torchvision
from skimage.metrics import structural_similarity

from maskad_core import losses
from maskad_core.losses import (
    DEFAULT_L1_WEIGHT,
    DEFAULT_LPIPS_WEIGHT,
    DEFAULT_SSIM_WEIGHT,
    LPIPSUnavailableError,
    LPIPSUnavailableWarning,
    ReconstructionLoss,
    alexnet_weights_path,
)
from maskad_core.scoring import ssim_window_size


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """A torch hub folder without AlexNet weights, downloads off, the once-only warning re-armed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.delenv(losses.DOWNLOAD_ENV_VAR, raising=False)
    monkeypatch.setattr(losses, "_warned_lpips_unavailable", False)
    assert not alexnet_weights_path().exists()
    assert str(alexnet_weights_path()).startswith(str(tmp_path))
    return tmp_path


@pytest.fixture
def hub_with_alexnet(empty_hub):
    """The hub folder holding a random AlexNet state_dict of the real shapes."""
    torch.manual_seed(0)
    path = alexnet_weights_path()
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def _pair(shape=(2, 3, 32, 32), seed=0):
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=generator)
    recon = (target + 0.2 * torch.randn(shape, generator=generator)).clamp(0, 1)
    return recon, target


def test_defaults_are_exposed_and_documented():
    from maskad_core.study.recipe_log import chosen_defaults

    assert DEFAULT_SSIM_WEIGHT == chosen_defaults()["ssim_weight"] and DEFAULT_L1_WEIGHT == 1.0
    assert 0 < DEFAULT_LPIPS_WEIGHT < DEFAULT_L1_WEIGHT
    assert "DEFAULT_LPIPS_WEIGHT" in losses.__doc__ and "recipe_log" in losses.__doc__


@pytest.mark.parametrize(
    "height, width, expected", [(224, 224, 11), (32, 16, 11), (10, 16, 9), (8, 8, 7), (3, 5, 3)]
)
def test_ssim_window_size_fits_small_images(height, width, expected):
    assert ssim_window_size(height, width) == expected


def test_ssim_window_size_rejects_tiny_images():
    with pytest.raises(ValueError, match="at least 3x3.*2x8"):
        ssim_window_size(2, 8)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-7), (torch.float32, 1e-5)])
def test_ssim_component_matches_skimage(dtype, tolerance):
    # Same window (Gaussian sigma 1.5, 11 px, skimage's truncate 3.5), population covariance and
    # data_range: both average the SSIM map over the valid interior, so they agree up to rounding
    # (float32 accumulation over 11x11 windows: ~1e-6; pytorch-msssim builds its window in float32).
    recon, target = _pair((1, 3, 32, 32))
    loss = ReconstructionLoss(lpips="off")
    _, parts = loss(recon.to(dtype), target.to(dtype))
    components = {name: part.item() for name, part in parts.items()}
    reference = structural_similarity(
        target[0].permute(1, 2, 0).double().numpy(), recon[0].permute(1, 2, 0).double().numpy(),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        channel_axis=2,
    )
    assert components["ssim"] == pytest.approx(1.0 - reference, abs=tolerance)
    assert 0.05 < components["ssim"] < 1.0  # a real difference, not a trivial agreement at 0


def test_components_total_and_gradient():
    recon, target = _pair()
    recon.requires_grad_(True)
    loss = ReconstructionLoss(ssim_weight=2.0, l1_weight=3.0, lpips_weight=5.0, lpips="off")
    total, parts = loss(recon, target)
    # tensors on the images' device, detached: the training loop reads them once per epoch
    assert all(p.ndim == 0 and not p.requires_grad and p.device == recon.device for p in parts.values())
    components = {name: part.item() for name, part in parts.items()}
    assert set(components) == {"ssim", "l1", "lpips", "total"}
    assert components["l1"] == pytest.approx(float((recon - target).abs().mean().detach()), rel=1e-6)
    assert components["lpips"] == 0.0
    assert components["total"] == pytest.approx(2.0 * components["ssim"] + 3.0 * components["l1"],
                                                rel=1e-6)
    assert total.ndim == 0 and total.item() == pytest.approx(components["total"])
    total.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0


def test_identical_images_cost_nothing_on_tiny_inputs():
    target = torch.rand(2, 3, 8, 8)
    total, parts = ReconstructionLoss(lpips="off")(target.clone(), target)
    components = {name: part.item() for name, part in parts.items()}
    assert float(total) == pytest.approx(0.0, abs=1e-6)
    assert components["ssim"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"lpips": "maybe"}, "lpips must be one of"), ({"l1_weight": -1.0}, "l1_weight"),
     ({"ssim_weight": float("nan")}, "ssim_weight")],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReconstructionLoss(**{"lpips": "off", **kwargs})


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\) and \(2, 3, 8, 9\)"):
        ReconstructionLoss(lpips="off")(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 9))


def test_lpips_off_never_loads(hub_with_alexnet, monkeypatch):
    monkeypatch.setattr(losses, "build_lpips", lambda: pytest.fail("LPIPS loaded with lpips='off'"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = ReconstructionLoss(lpips="off")
    assert not loss.lpips_active and "off" in loss.lpips_reason
    assert loss.lpips_net is None


def test_lpips_auto_without_weights_warns_once_and_continues(empty_hub, capsys):
    with pytest.warns(LPIPSUnavailableWarning, match=str(alexnet_weights_path())):
        loss = ReconstructionLoss(lpips="auto")
    assert not loss.lpips_active
    assert str(alexnet_weights_path()) in loss.lpips_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second instance must not warn again
        again = ReconstructionLoss(lpips="auto")
    assert not again.lpips_active
    recon, target = _pair()
    total, parts = loss(recon, target)
    components = {name: part.item() for name, part in parts.items()}
    assert components["lpips"] == 0.0
    assert components["total"] == pytest.approx(
        DEFAULT_SSIM_WEIGHT * components["ssim"] + DEFAULT_L1_WEIGHT * components["l1"], rel=1e-6)
    assert capsys.readouterr().out == ""


def test_lpips_required_without_weights_names_the_file(empty_hub):
    with pytest.raises(LPIPSUnavailableError, match=str(alexnet_weights_path())):
        ReconstructionLoss(lpips="required")


def test_lpips_auto_download_failure_is_caught(empty_hub, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv(losses.DOWNLOAD_ENV_VAR, "1")
    monkeypatch.setattr(losses.urllib.request, "urlopen", offline)
    with pytest.warns(LPIPSUnavailableWarning, match="download.*failed: no network"):
        loss = ReconstructionLoss(lpips="auto")
    assert not loss.lpips_active and "no network" in loss.lpips_reason
    assert not alexnet_weights_path().exists()
    assert not list(alexnet_weights_path().parent.iterdir())  # no partial file left behind


def test_lpips_corrupt_weights_file_is_reported(empty_hub):
    path = alexnet_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(LPIPSUnavailableError, match="could not read"):
        ReconstructionLoss(lpips="required")


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_lpips_loaded_from_hub_folder(hub_with_alexnet, mode, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation noise, no unavailability warning
        loss = ReconstructionLoss(lpips=mode)
    assert capsys.readouterr().out == ""  # lpips's "Setting up [LPIPS]" banner suppressed
    assert loss.lpips_active and loss.lpips_reason == ""
    # The trunk holds exactly the weights of the file.
    saved = torch.load(hub_with_alexnet, weights_only=True)
    assert torch.equal(getattr(loss.lpips_net.net.slice1, "0").weight, saved["features.0.weight"])
    assert torch.equal(getattr(loss.lpips_net.net.slice5, "10").bias, saved["features.10.bias"])
    # Frozen, out of any optimiser, and kept in eval mode while the loss module is in train mode.
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.lpips_net.training

    recon, target = _pair((2, 3, 16, 16))  # smaller than AlexNet's minimum: upsampled
    recon.requires_grad_(True)
    total, parts = loss(recon, target)
    components = {name: part.item() for name, part in parts.items()}
    assert components["lpips"] > 0.0
    expected = (DEFAULT_SSIM_WEIGHT * components["ssim"] + DEFAULT_L1_WEIGHT * components["l1"]
                + DEFAULT_LPIPS_WEIGHT * components["lpips"])
    assert components["total"] == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert recon.grad.abs().sum() > 0
    _, same = loss(target.clone(), target)
    assert same["lpips"] == pytest.approx(0.0, abs=1e-7)


def test_lpips_weight_file_with_wrong_shapes_is_rejected(empty_hub):
    path = alexnet_weights_path()
    path.parent.mkdir(parents=True)
    state = torchvision.models.alexnet(weights=None).state_dict()
    state["features.3.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(LPIPSUnavailableError, match="do not fit"):
        ReconstructionLoss(lpips="required")


def test_loss_is_finite_for_constant_images():
    # Flat images have zero variance; SSIM's constants keep the ratio finite.
    flat = torch.full((1, 3, 16, 16), 0.5)
    total, parts = ReconstructionLoss(lpips="off")(flat, torch.zeros_like(flat))
    components = {name: part.item() for name, part in parts.items()}
    assert np.isfinite(float(total)) and components["l1"] == pytest.approx(0.5)


def _old_loss(recon, target, ssim_weight, l1_weight):
    """The loss as computed before the separable SSIM: pytorch-msssim's ssim, then L1."""
    from pytorch_msssim import ssim

    window = ssim_window_size(recon.shape[-2], recon.shape[-1])
    ssim_term = 1.0 - ssim(recon, target, data_range=1.0, size_average=True, win_size=window,
                           win_sigma=1.5)
    return ssim_weight * ssim_term + l1_weight * (recon - target).abs().mean(), ssim_term


@pytest.mark.parametrize("dtype, shape, tolerance", [
    (torch.float32, (4, 3, 64, 64), 1e-6), (torch.float64, (3, 3, 20, 17), 1e-12),
    (torch.float64, (2, 1, 9, 12), 1e-12)])
def test_separable_ssim_equals_pytorch_msssim_with_its_gradients(dtype, shape, tolerance):
    torch.manual_seed(0)
    target = torch.rand(shape, dtype=dtype)
    recon = (target + 0.2 * torch.randn_like(target)).clamp(0, 1)
    a, b = recon.clone().requires_grad_(), target.clone().requires_grad_()
    old, old_ssim = _old_loss(a, b, 0.7, 0.3)
    old_grads = torch.autograd.grad(old, (a, b))
    a, b = recon.clone().requires_grad_(), target.clone().requires_grad_()
    new, parts = ReconstructionLoss(0.7, 0.3, 0.0, lpips="off")(a, b)
    new_grads = torch.autograd.grad(new, (a, b))
    assert 0.05 < old_ssim.item() < 1.0  # a real difference, not agreement at 0
    assert float(parts["ssim"]) == pytest.approx(old_ssim.item(), abs=tolerance)
    assert new.item() == pytest.approx(old.item(), abs=tolerance)
    for old_grad, new_grad in zip(old_grads, new_grads, strict=True):
        assert float(old_grad.abs().max()) > 1e-4
        assert torch.allclose(new_grad, old_grad, rtol=1e-4, atol=tolerance * 1e-2)


def test_training_step_loss_and_gradients_equal_the_old_code():
    # one real-profile-like step on a fixed batch: the model's weight gradients through the old
    # loss (pytorch-msssim) and through the new one agree within float rounding
    from maskad_core.masking import complementary_masks
    from maskad_core.model import MaskedAutoencoder

    torch.manual_seed(0)
    model = MaskedAutoencoder(img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)
    images = torch.rand(4, 3, 64, 64)
    generator = torch.Generator().manual_seed(1)
    masks = torch.stack([complementary_masks(16, 0.75, generator) for _ in range(4)])

    def grads(loss_of):
        model.zero_grad(set_to_none=True)
        loss = loss_of(model(images, masks), images)
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    old_loss, old_grads = grads(lambda r, t: _old_loss(r, t, DEFAULT_SSIM_WEIGHT, 1.0)[0])
    new_loss, new_grads = grads(lambda r, t: ReconstructionLoss(lpips="off")(r, t)[0])
    assert new_loss == pytest.approx(old_loss, rel=1e-6)
    for old_grad, new_grad in zip(old_grads, new_grads, strict=True):
        assert torch.allclose(new_grad, old_grad, rtol=1e-4, atol=1e-7)
    assert max(float(g.abs().max()) for g in old_grads) > 1e-3
