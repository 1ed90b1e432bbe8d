"""The detectors' registry and contract, the confound probes ("brightness", "contrast"), the floor
fair to parts that move ("patch_nn") and the per-image standardisation control. Planted anomalies
and moved parts only: no AUROC level is asserted."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from maskad_core import scoring
from maskad_core.data.image_norm import CENTER, SCALE, standardize_images
from maskad_core.evaluation.detectors import (
    DEFAULT_SMOOTH_SIGMA,
    DETECTORS,
    FLOOR_METHODS,
    METHODS,
    PROBE_METHODS,
    PixelGaussian,
    detector_class,
    detector_settings,
    make_detector,
)

SIZE = 32
BAR = (slice(12, 20), slice(8, 24))  # rows, columns of the part: 8 px (a patch) from the edges


def part_images(count: int, seed: int, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """A striped bar (the 'part') on a flat background, with pixel noise; ``shift`` moves the part
    by (rows, columns). The stripes run along the bar, so a quarter turn makes new patches."""
    generator = torch.Generator().manual_seed(seed)
    grey = torch.full((SIZE, SIZE), 0.2)
    rows = slice(BAR[0].start + shift[0], BAR[0].stop + shift[0])
    columns = slice(BAR[1].start + shift[1], BAR[1].stop + shift[1])
    stripes = 0.6 + 0.2 * (torch.arange(rows.stop - rows.start) // 2 % 2).float()
    grey[rows, columns] = stripes[:, None]
    base = torch.stack([grey, 0.9 * grey, 0.8 * grey + 0.05])
    noise = 0.02 * torch.randn(count, 3, SIZE, SIZE, generator=generator)
    return (base + noise).clamp(0, 1)


def max_scores(detector, images: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    return detector.anomaly_map(images, sigma).amax(dim=(1, 2))


# ------------------------------------------------------------------ the registry
def test_every_detector_is_registered_once_under_its_name():
    assert METHODS == tuple(DETECTORS) and len(set(METHODS)) == len(METHODS)
    assert METHODS[:2] == ("gaussian", "nn")  # the original floor keeps its place (and CLI default)
    assert FLOOR_METHODS == ("gaussian", "nn", "patch_nn")
    assert PROBE_METHODS == ("brightness", "contrast", "mean_colour")
    for name, cls in DETECTORS.items():
        assert cls.name == name and detector_class(name) is cls
        detector = make_detector(name)
        assert isinstance(detector, cls) and detector.get_settings() == detector_settings(name)
        for key, setting in cls.settings.items():  # each default passes its own check
            assert setting.check(key, setting.default) == setting.default


@pytest.mark.parametrize("name", ["knn", "Gaussian", "", None])
def test_an_unknown_detector_is_named_with_the_allowed_ones(name):
    with pytest.raises(ValueError) as info:
        make_detector(name)
    assert repr(name) in str(info.value) and ", ".join(METHODS) in str(info.value)


@pytest.mark.parametrize("name", METHODS)
def test_an_unknown_setting_is_named_with_the_detectors_settings(name):
    with pytest.raises(ValueError) as info:
        make_detector(name, std_flor=0.1)
    text = str(info.value)
    assert "'std_flor'" in text and repr(name) in text and "\n" not in text
    assert all(key in text for key in DETECTORS[name].settings)


def test_a_setting_of_another_detector_is_refused():
    with pytest.raises(ValueError, match="unknown setting 'max_chunk_bytes' for detector 'gaussian'"):
        make_detector("gaussian", max_chunk_bytes=1000)
    with pytest.raises(ValueError, match=r"unknown setting 'std_floor'.*stat_std_floor \(default"):
        make_detector("brightness", std_floor=0.02)


@pytest.mark.parametrize("name, key, value, fragment", [
    ("gaussian", "std_floor", 0.0, "std_floor must be a finite number > 0"),
    ("gaussian", "std_floor", float("nan"), "std_floor must be a finite number > 0"),
    ("nn", "max_chunk_bytes", 0, "max_chunk_bytes must be a positive integer"),
    ("nn", "max_chunk_bytes", True, "max_chunk_bytes must be a positive integer"),
    ("brightness", "stat_std_floor", -1.0, "stat_std_floor must be a finite number > 0"),
    ("patch_nn", "patch_size", 0, "patch_size must be a positive integer"),
    ("patch_nn", "stride", 9, "stride (9) must be at most patch_size (8)"),
    ("patch_nn", "pool", 3, "pool (3) must divide patch_size (8)"),
    ("patch_nn", "augment", "rot45", "augment must be one of none, rot90, dihedral"),
    ("patch_nn", "subtract_mean", 1, "subtract_mean must be True or False"),
    ("patch_nn", "max_bank", 0.5, "max_bank must be a positive integer"),
    ("patch_nn", "seed", -1, "seed must be an integer >= 0"),
])
def test_bad_setting_values_are_refused(name, key, value, fragment):
    with pytest.raises(ValueError) as info:
        make_detector(name, **{key: value})
    assert fragment in str(info.value)


def test_the_pixel_detectors_keep_their_calls_and_maps():
    train, test = part_images(6, seed=0), part_images(3, seed=1)
    gaussian = make_detector("gaussian", std_floor=0.05).fit(train)
    assert gaussian.std_floor == 0.05 and PixelGaussian(0.05).std_floor == 0.05  # positional too
    std, mean = torch.std_mean(train, dim=0, correction=0)
    expected = ((test - mean) / std.clamp_min(0.05)).square().mean(dim=1)
    torch.testing.assert_close(gaussian.anomaly_map(test), expected)
    nearest = make_detector("nn", max_chunk_bytes=1000).fit(train)
    brute = (test[:, None] - train[None]).square().mean(dim=2).amin(dim=1)
    torch.testing.assert_close(nearest.anomaly_map(test), brute)


# ------------------------------------------------------------------ the contract
@pytest.mark.parametrize("name", METHODS)
def test_every_detector_keeps_the_contract(name):
    train, test = part_images(5, seed=0), part_images(3, seed=1)
    detector = make_detector(name)
    with pytest.raises(ValueError, match="fit the detector"):
        detector.anomaly_map(test)
    with pytest.raises(ValueError, match="no images"):
        detector.fit(train[:0])
    assert detector.fit(train) is detector
    for sigma in (0.0, DEFAULT_SMOOTH_SIGMA):
        maps = detector.anomaly_map(test, sigma)
        assert maps.shape == (3, SIZE, SIZE) and maps.dtype == torch.float32
        assert torch.isfinite(maps).all() and (maps >= 0).all()
    with pytest.raises(ValueError, match=r"\(3, 16, 16\).*\(3, 32, 32\).*image_size"):
        detector.anomaly_map(test[:, :, :16, :16])
    with pytest.raises(ValueError, match=r"\(3, 32, 32\).*image_size"):
        detector.anomaly_map(test[:, :1])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        detector.anomaly_map(test[0])
    with pytest.raises(ValueError, match="smooth_sigma"):
        detector.anomaly_map(test, -1.0)
    one = make_detector(name).fit(train[:1]).anomaly_map(test)  # one training image: floors hold
    assert torch.isfinite(one).all()


# ------------------------------------------------------------------ the confound probes
@pytest.mark.parametrize("name, change", [
    ("brightness", lambda x: x + 0.1),  # brightened by a constant
    ("contrast", lambda x: x.mean(dim=(2, 3), keepdim=True) * -0.3 + 1.3 * x),  # contrast x 1.3
])
def test_a_probe_flags_its_own_change_of_a_normal_image(name, change):
    train, normal = part_images(20, seed=0), part_images(10, seed=1)
    probe = make_detector(name).fit(train)
    normal_scores = probe.image_scores(normal)
    changed_scores = probe.image_scores(change(normal))
    assert changed_scores.min() > 3 * normal_scores.max()


def test_the_probes_measure_different_things():
    train, normal = part_images(20, seed=0), part_images(10, seed=1)
    brightness, contrast = make_detector("brightness").fit(train), make_detector("contrast").fit(train)
    brightened = normal + 0.1  # same contrast: the contrast probe does not move
    torch.testing.assert_close(contrast.image_scores(brightened), contrast.image_scores(normal),
                               atol=1e-3, rtol=0)
    assert brightness.image_scores(brightened).min() > 3 * brightness.image_scores(normal).max()


@pytest.mark.parametrize("name", ["brightness", "contrast"])
def test_a_probe_map_is_its_score_everywhere(name):
    train, test = part_images(8, seed=0), part_images(4, seed=1)
    test[0] += 0.2
    probe = make_detector(name).fit(train)
    scores = probe.image_scores(test)
    maps = probe.anomaly_map(test)
    assert torch.equal(maps, scores[:, None, None].expand_as(maps))
    assert torch.equal(probe.anomaly_map(test, DEFAULT_SMOOTH_SIGMA), maps)  # smoothing: unchanged
    for reduction in scoring.REDUCTIONS:
        torch.testing.assert_close(scoring.image_score(maps, reduction, 0.01), scores)


def test_identical_training_images_use_the_std_floor():
    image = part_images(1, seed=0)
    probe = make_detector("brightness", stat_std_floor=0.01).fit(image.expand(4, -1, -1, -1))
    assert torch.all(probe.std == 0.01)
    expected = (image + 0.05).mean(dim=(2, 3)).sub(image.mean(dim=(2, 3))).abs().div(0.01).mean(1)
    torch.testing.assert_close(probe.image_scores(image + 0.05), expected)  # 5 floors away


# ------------------------------------------------------------------ patch_nn
@pytest.mark.parametrize("smooth_sigma", [0.0, DEFAULT_SMOOTH_SIGMA])
def test_patch_nn_puts_a_planted_square_at_the_maximum(smooth_sigma):
    train, normal = part_images(16, seed=0), part_images(6, seed=1)
    defective = normal[:1].clone()
    # a bright square on the background, one patch in size: a pixel takes the mean of the scores
    # of the patches covering it, so the map is as sharp as a patch
    defective[0, :, 4:12, 20:28] = 1.0
    detector = make_detector("patch_nn").fit(train)
    maps = detector.anomaly_map(defective, smooth_sigma)
    row, column = divmod(int(maps[0].argmax()), SIZE)
    assert 4 <= row < 12 and 20 <= column < 28
    assert maps[0].max() > 10 * max_scores(detector, normal, smooth_sigma).max()


SHIFTS = [(3, 5), (-3, -5), (4, -8), (-2, 6), (1, 7), (0, -4)]  # (rows, columns), in pixels


@pytest.mark.parametrize("smooth_sigma", [0.0, DEFAULT_SMOOTH_SIGMA])
def test_patch_nn_scores_moved_parts_as_normal_where_gaussian_flags_them(smooth_sigma):
    train, held_out = part_images(16, seed=0), part_images(24, seed=1)
    shifted = torch.cat([part_images(1, seed=2 + i, shift=shift) for i, shift in enumerate(SHIFTS)])
    rotated = torch.rot90(held_out, 1, dims=(2, 3))
    defective = held_out[:1].clone()
    defective[0, :, 14:18, 10:14] = 1.0  # a bright square on the part
    patch_nn = make_detector("patch_nn").fit(train)
    normal = max_scores(patch_nn, held_out, smooth_sigma)
    moved = max_scores(patch_nn, shifted, smooth_sigma)
    # shifted parts score as normal ones: their median inside the held-out range, none far above it
    # (what is left is noise: a shift changes where the scored patches fall on the part's edges)
    assert normal.min() <= moved.median() <= normal.max()
    assert moved.max() < 1.5 * normal.max()
    # a quarter turn of each held-out image scores as that image: the bank holds every quarter turn
    torch.testing.assert_close(max_scores(patch_nn, rotated, smooth_sigma), normal,
                               rtol=1e-3, atol=1e-8)
    assert max_scores(patch_nn, defective, smooth_sigma) > 10 * normal.max()
    # the per-pixel floor compares pixel (x, y) with pixel (x, y): a moved part is a defect to it
    gaussian = make_detector("gaussian").fit(train)
    gaussian_normal = max_scores(gaussian, held_out, smooth_sigma).max()
    assert max_scores(gaussian, shifted, smooth_sigma).min() > 10 * gaussian_normal
    assert max_scores(gaussian, rotated, smooth_sigma).min() > 10 * gaussian_normal


def test_patch_nn_owes_its_rotation_tolerance_to_the_turned_bank_patches():
    train, held_out = part_images(16, seed=0), part_images(8, seed=1)
    rotated = torch.rot90(held_out[:1], 1, dims=(2, 3))
    unturned = make_detector("patch_nn", augment="none").fit(train)
    assert max_scores(unturned, rotated) > 3 * max_scores(unturned, held_out).max()


def brute_force_patch_map(train, test, patch, stride, pool, turns):
    """Every patch of every training image in every orientation, compared one by one."""
    def grids(images):  # (B, L, C, p, p): block means of every patch at stride 1
        patches = [images[:, :, y:y + patch, x:x + patch]
                   for y in range(images.shape[2] - patch + 1)
                   for x in range(images.shape[3] - patch + 1)]
        return torch.stack([F.avg_pool2d(p, pool) if pool > 1 else p for p in patches], dim=1)

    bank = grids(train).flatten(0, 1)
    bank = torch.cat([torch.rot90(bank, k, dims=(-2, -1)) for k in range(turns)]).flatten(1)
    height = test.shape[2]
    starts = sorted(set(range(0, height - patch + 1, stride)) | {height - patch})
    maps = torch.zeros(test.shape[0], height, height)
    for b in range(test.shape[0]):
        total, count = torch.zeros(height, height), torch.zeros(height, height)
        for y in starts:
            for x in starts:
                query = test[b:b + 1, :, y:y + patch, x:x + patch]
                query = (F.avg_pool2d(query, pool) if pool > 1 else query).flatten(1)
                score = (bank - query).square().mean(dim=1).min()
                total[y:y + patch, x:x + patch] += score
                count[y:y + patch, x:x + patch] += 1
        maps[b] = total / count
    return maps


@pytest.mark.parametrize("patch, stride, pool, augment, turns", [
    (4, 2, 1, "none", 1), (4, 3, 2, "rot90", 4), (6, 4, 3, "rot90", 4)])
@pytest.mark.parametrize("max_chunk_bytes", [1, 4096, 2**28])
def test_patch_nn_equals_brute_force_in_any_chunks(patch, stride, pool, augment, turns,
                                                    max_chunk_bytes):
    generator = torch.Generator().manual_seed(0)
    train, test = torch.rand(3, 2, 11, 11, generator=generator), torch.rand(2, 2, 11, 11,
                                                                             generator=generator)
    detector = make_detector("patch_nn", patch_size=patch, stride=stride, pool=pool,
                             augment=augment, max_chunk_bytes=max_chunk_bytes).fit(train)
    assert detector.bank.shape[0] == 3 * (11 - patch + 1) ** 2 * turns  # under max_bank: all
    expected = brute_force_patch_map(train, test, patch, stride, pool, turns)
    torch.testing.assert_close(detector.anomaly_map(test), expected, atol=1e-5, rtol=1e-4)


def test_patch_nn_bank_is_bounded_and_seeded():
    train = part_images(4, seed=0)
    full = make_detector("patch_nn", augment="dihedral").fit(train)
    assert full.bank.shape == (4 * 25 * 25 * 8, 3 * 4 * 4)
    banks = [make_detector("patch_nn", max_bank=300, seed=seed).fit(train).bank
             for seed in (0, 0, 1)]
    assert banks[0].shape == (300, 48) and torch.equal(banks[0], banks[1])
    assert not torch.equal(banks[0], banks[2])
    assert len(torch.unique(banks[0], dim=0)) == 300  # drawn without replacement


def test_patch_nn_with_subtract_mean_ignores_a_brightened_image():
    train, test = part_images(8, seed=0), part_images(2, seed=1)
    centred = make_detector("patch_nn", subtract_mean=True).fit(train)
    torch.testing.assert_close(centred.anomaly_map(test + 0.1), centred.anomaly_map(test),
                               atol=1e-5, rtol=1e-4)
    raw = make_detector("patch_nn").fit(train)
    assert max_scores(raw, test + 0.1).min() > 3 * max_scores(raw, test).max()


def test_patch_nn_refuses_images_smaller_than_a_patch():
    with pytest.raises(ValueError, match="patch_size 8 does not fit in images of 6 x 32 px"):
        make_detector("patch_nn").fit(torch.rand(2, 3, 6, 32))


# ------------------------------------------------------------------ the standardisation control
IMAGES = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9),
                   st.integers(0, 2**31 - 1))


@given(shape=IMAGES, scale=st.floats(0.2, 5.0), offset=st.floats(-2.0, 2.0),
       channel_scale=st.floats(0.7, 1.5))
@settings(max_examples=60, deadline=None)
def test_standardisation_is_invariant_to_an_affine_change_of_intensity(shape, scale, offset,
                                                                       channel_scale):
    *size, seed = shape
    images = torch.rand(*size, generator=torch.Generator().manual_seed(seed))
    images[..., 0, 0], images[..., -1, -1] = 0.0, 1.0  # every image and channel varies
    # a > 0 and b per image and channel
    a = scale * channel_scale ** torch.arange(size[0] * size[1]).view(size[0], size[1], 1, 1)
    b = offset - torch.arange(size[1]).view(1, size[1], 1, 1) * 0.3
    standard = standardize_images(images)
    torch.testing.assert_close(standardize_images(a * images + b), standard, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(standard.mean(dim=(-2, -1)), torch.full(size[:2], CENTER))
    torch.testing.assert_close(standard.std(dim=(-2, -1), correction=0), torch.full(size[:2], SCALE))


@given(value=st.floats(-10.0, 10.0), clamp=st.booleans(), side=st.integers(1, 8))
@settings(max_examples=40, deadline=None)
def test_standardisation_keeps_constant_images_finite(value, clamp, side):
    standard = standardize_images(torch.full((2, 3, side, side), value), clamp=clamp)
    assert torch.isfinite(standard).all()
    torch.testing.assert_close(standard, torch.full_like(standard, CENTER), atol=1e-3, rtol=0)


def test_standardisation_clamps_only_when_asked():
    image = torch.zeros(1, 1, 10, 10)
    image[0, 0, 0, 0] = 1.0  # an outlier: z = 9.9
    assert standardize_images(image).max() > 1.0
    assert standardize_images(image, clamp=True).max() == 1.0
    for bad, fragment in ((torch.rand(4, 4), "(..., C, H, W)"), (torch.full((1, 1, 2, 2), float("nan")),
                                                                   "NaN")):
        with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            standardize_images(bad)
    with pytest.raises(ValueError, match="eps"):
        standardize_images(image, eps=0.0)


@pytest.mark.parametrize("name", ["brightness", "contrast"])
def test_after_standardisation_a_probe_cannot_tell_a_changed_image(name):
    train, test = part_images(20, seed=0), part_images(5, seed=1)
    changed = 1.2 * test + 0.1  # brighter and more contrasted
    raw = make_detector(name).fit(train)
    assert raw.image_scores(changed).min() > 3 * raw.image_scores(test).max()  # before: flagged
    control = make_detector(name).fit(standardize_images(train))
    torch.testing.assert_close(control.image_scores(standardize_images(changed)),
                               control.image_scores(standardize_images(test)), atol=1e-3, rtol=0)


def test_mean_colour_scores_eq1_of_the_images_own_mean_colour_and_learns_nothing():
    from maskad_core import scoring

    generator = torch.Generator().manual_seed(3)
    train, test = torch.rand(4, 3, 16, 16, generator=generator), torch.rand(5, 3, 16, 16, generator=generator)
    test[0] *= 0.2  # a flat image: low variance, low score
    probe = make_detector("mean_colour").fit(train)
    flat = test.mean(dim=(2, 3), keepdim=True).expand_as(test)
    expected = scoring.eq1_score(test, flat)
    assert torch.allclose(probe.image_scores(test), expected, atol=1e-7)
    assert probe.image_scores(test).argmin() == 0
    other = make_detector("mean_colour").fit(torch.zeros(2, 3, 16, 16))
    assert torch.equal(other.image_scores(test), probe.image_scores(test))  # nothing was fitted
    assert torch.equal(probe.anomaly_map(test, smooth_sigma=2.0)[:, 3, 5], probe.image_scores(test))
