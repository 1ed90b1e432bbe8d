"""Anomaly maps and image scores."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from maskad_core.scoring import (
    ANOMALY_MAP_KINDS,
    REDUCTIONS,
    anomaly_map,
    gaussian_smooth,
    image_score,
    ssim_map,
)


def _pair(shape=(2, 3, 24, 24), seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(shape, generator=generator, dtype=torch.float64)
    recon = (images + 0.2 * torch.randn(shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    return images, recon


def test_l2_map_and_mean_score_are_equation_1():
    images, recon = _pair()
    maps = anomaly_map(images, recon, kind="l2")
    assert maps.shape == (2, 24, 24)
    # eq. 1: s(x) = 1/N sum_i (x_i - x_hat_i)^2, N over pixels (and channels, averaged).
    expected = ((images - recon) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(image_score(maps, "mean"), expected)


def test_l1_map():
    images, recon = _pair()
    torch.testing.assert_close(anomaly_map(images, recon, kind="l1"),
                               (images - recon).abs().mean(1))


def test_ssim_map_matches_skimage_away_from_border():
    # skimage's full map uses scipy's half-sample reflection at the border, ours torch's mirror
    # padding; the 5-pixel interior (window radius) sees no padding, so it must agree to rounding.
    images, recon = _pair((1, 3, 24, 24))
    ours = ssim_map(images, recon)[0].permute(1, 2, 0).numpy()
    _, reference = structural_similarity(
        images[0].permute(1, 2, 0).numpy(), recon[0].permute(1, 2, 0).numpy(),
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        channel_axis=2, full=True,
    )
    np.testing.assert_allclose(ours[5:-5, 5:-5], reference[5:-5, 5:-5], atol=1e-10)
    maps = anomaly_map(images, recon, kind="ssim")
    np.testing.assert_allclose(maps[0].numpy(), 1.0 - ours.mean(axis=2), atol=1e-12)


def test_ssim_map_of_identical_images_is_zero_even_when_tiny():
    images = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    maps = anomaly_map(images, images.clone(), kind="ssim")
    assert maps.shape == (2, 5, 7)
    assert maps.abs().max() < 1e-12


@pytest.mark.parametrize("sigma", [0.7, 1.5, 2.0])
def test_smoothing_matches_scipy_mirror_filter(sigma):
    maps = torch.rand(2, 20, 24, dtype=torch.float64)
    ours = gaussian_smooth(maps, sigma).numpy()
    for index in range(2):
        reference = gaussian_filter(maps[index].numpy(), sigma, mode="mirror", truncate=4.0)
        np.testing.assert_allclose(ours[index], reference, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.1, 5.0])
def test_smoothing_kernel_wider_than_map_still_matches_scipy(sigma):
    maps = torch.rand(1, 4, 5, dtype=torch.float64)  # sigma 5: radius 20, mirrored several times
    reference = gaussian_filter(maps[0].numpy(), sigma, mode="mirror", truncate=4.0)
    np.testing.assert_allclose(gaussian_smooth(maps, sigma)[0].numpy(), reference, atol=1e-12)
    assert torch.equal(gaussian_smooth(maps, 0.0), maps)


def test_anomaly_map_smoothing_argument():
    images, recon = _pair()
    raw = anomaly_map(images, recon, kind="l2")
    torch.testing.assert_close(anomaly_map(images, recon, kind="l2", smooth_sigma=2.0),
                               gaussian_smooth(raw, 2.0))
    assert not torch.allclose(raw, gaussian_smooth(raw, 2.0))


def test_max_and_topk_reductions():
    maps = torch.arange(100, dtype=torch.float64).reshape(1, 10, 10).repeat(2, 1, 1)
    maps[1] = maps[1].flip(0)  # same values, other places: same scores
    assert image_score(maps, "max").tolist() == [99.0, 99.0]
    assert image_score(maps, "topk", topk_fraction=0.05).tolist() == [97.0, 97.0]  # 95..99
    assert image_score(maps, "topk", topk_fraction=0.001).tolist() == [99.0, 99.0]  # at least 1
    assert image_score(maps, "topk", topk_fraction=1.0).tolist() == [49.5, 49.5]
    # 0.1 * 30 is 3 pixels, even though the float product is 3.0000000000000004
    assert image_score(torch.arange(30.0).reshape(1, 5, 6), "topk", 0.1).tolist() == [28.0]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.floats(0.01, 1.0),
       st.integers(0, 2**31 - 1))
def test_reductions_are_ordered(batch, height, width, fraction, seed):
    maps = torch.rand(batch, height, width, generator=torch.Generator().manual_seed(seed))
    mean, top, peak = (image_score(maps, "mean"), image_score(maps, "topk", fraction),
                       image_score(maps, "max"))
    assert mean.shape == (batch,)
    assert torch.all(mean <= top + 1e-6) and torch.all(top <= peak + 1e-6)


def test_bad_kind_reduction_and_shapes():
    images, recon = _pair()
    with pytest.raises(ValueError, match=str(ANOMALY_MAP_KINDS).replace("(", r"\(").replace(")", r"\)")):
        anomaly_map(images, recon, kind="l3")
    with pytest.raises(ValueError, match="one shape.*24, 24\\) and"):
        anomaly_map(images, recon[:, :, :20])
    with pytest.raises(ValueError, match="one shape"):
        anomaly_map(images[0], recon[0])
    with pytest.raises(ValueError, match="smooth_sigma"):
        anomaly_map(images, recon, smooth_sigma=-1.0)
    maps = anomaly_map(images, recon)
    with pytest.raises(ValueError, match="reduction must be one of.*'topk'"):
        image_score(maps, "median")
    assert REDUCTIONS == ("mean", "max", "topk")
    with pytest.raises(ValueError, match="topk_fraction"):
        image_score(maps, "topk", topk_fraction=0.0)
    with pytest.raises(ValueError, match=r"\(B, H, W\).*\(2, 3, 24, 24\)"):
        image_score(images, "mean")
    with pytest.raises(ValueError, match="at least 3x3"):
        anomaly_map(images[:, :, :2], recon[:, :, :2], kind="ssim")


@settings(max_examples=25, deadline=None)
@given(offset=st.floats(-0.4, 0.4), channel_offsets=st.lists(st.floats(-0.3, 0.3), min_size=3,
                                                                max_size=3), seed=st.integers(0, 99))
def test_centered_map_ignores_a_global_intensity_offset(offset, channel_offsets, seed):
    images, recon = _pair(seed=seed)
    shift = offset + torch.tensor(channel_offsets, dtype=images.dtype).view(1, 3, 1, 1)
    plain = anomaly_map(images, recon, kind="l2_centered")
    shifted = anomaly_map(images + shift, recon, kind="l2_centered")
    torch.testing.assert_close(shifted, plain, atol=1e-10, rtol=0)
    # the plain squared error does change (it is what eq. 1 measures)
    if abs(offset) > 0.05:
        assert not torch.allclose(anomaly_map(images + shift, recon, kind="l2"),
                                  anomaly_map(images, recon, kind="l2"))


def test_centered_map_still_sees_a_local_defect():
    images, recon = _pair(seed=3)
    recon = images.clone()
    recon[:, :, 4:8, 4:8] += 0.5
    maps = anomaly_map(images, recon, kind="l2_centered")
    inside, outside = maps[:, 4:8, 4:8].mean(), maps.clone()
    outside[:, 4:8, 4:8] = 0
    assert inside > 10 * outside.max()


def test_eq1_score_is_the_mean_squared_error():
    from maskad_core.scoring import eq1_score

    images, recon = _pair()
    torch.testing.assert_close(eq1_score(images, recon), ((images - recon) ** 2).mean(dim=(1, 2, 3)))
