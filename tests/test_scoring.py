"""Anomaly maps and image scores."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from maskad_core import scoring
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


# -- per-pixel standardisation against normal images' maps
def test_standardized_map_discounts_where_the_model_always_errs():
    """An error at a pixel where normal maps are always high scores below the same error at a pixel
    where they are near zero: that is the point of the statistics."""
    generator = torch.Generator().manual_seed(0)
    normal = 0.01 * torch.rand(20, 8, 8, generator=generator)
    normal[:, 0, 0] += 0.5 + 0.2 * torch.rand(20, generator=generator)  # an edge it always blurs
    statistics = scoring.MapStatistics.fit(normal, ["bottle"] * 20)
    test = torch.full((2, 8, 8), 0.005)
    test[0, 0, 0] = 0.9  # 0.3 above the edge's usual error
    test[1, 4, 4] = 0.3  # 0.3 where the model is usually exact
    z = statistics.standardize(test, ["bottle", "bottle"])
    assert z[1].max() == z[1, 4, 4] and z[1, 4, 4] > 3 * z[0, 0, 0]
    assert scoring.image_score(z, "max")[1] > scoring.image_score(z, "max")[0]
    # raw maps rank them the other way round
    assert scoring.image_score(test, "max")[0] > scoring.image_score(test, "max")[1]


def test_statistics_are_per_category_and_a_normal_map_scores_near_zero():
    a = torch.rand(10, 4, 4, generator=torch.Generator().manual_seed(1))
    b = 5.0 + torch.rand(10, 4, 4, generator=torch.Generator().manual_seed(2))
    statistics = scoring.MapStatistics.fit(torch.cat([a, b]), ["a"] * 10 + ["b"] * 10)
    z = statistics.standardize(torch.stack([a.mean(0), b.mean(0)]), ["a", "b"])
    assert z.abs().max() < 1e-5  # each category's mean map is exactly its own centre
    swapped = statistics.standardize(torch.stack([a.mean(0)]), ["b"])
    assert swapped.max() < -5  # measured against the wrong category it is far off


def test_a_constant_normal_map_keeps_a_finite_floor():
    statistics = scoring.MapStatistics.fit(torch.zeros(3, 4, 4), ["x"] * 3)
    z = statistics.standardize(torch.ones(1, 4, 4), ["x"])
    assert torch.isfinite(z).all()


def test_map_statistics_bad_input_names_the_problem():
    statistics = scoring.MapStatistics.fit(torch.rand(4, 8, 8), ["bottle"] * 4)
    with pytest.raises(ValueError, match="no map statistics for categories \\['screw'\\]"):
        statistics.standardize(torch.rand(1, 8, 8), ["screw"])
    with pytest.raises(ValueError, match="fitted size \\(8, 8\\)"):
        statistics.standardize(torch.rand(1, 4, 4), ["bottle"])
    with pytest.raises(ValueError, match="one category per map"):
        scoring.MapStatistics.fit(torch.rand(4, 8, 8), ["bottle"] * 3)
