"""Image AUROC, pixel AUROC and AUPRO against scikit-learn, a brute-force reference and hand cases."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from maskad_core.metrics import UndefinedMetricWarning, aupro, image_auroc, pixel_auroc, pro_curve

labels_and_scores = st.integers(2, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)),
        st.lists(st.integers(0, 5), min_size=n, max_size=n),  # few values: many ties
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_and_scores)
def test_image_auroc_equals_sklearn(case):
    labels, scores = case
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(labels_and_scores)
def test_auroc_invariant_to_monotone_transforms(case):
    labels, scores = case
    scores = np.asarray(scores, dtype=float)
    expected = image_auroc(labels, scores)
    assert image_auroc(labels, np.exp(scores) * 3.0 - 7.0) == pytest.approx(expected, abs=1e-12)
    assert image_auroc(labels, -scores) == pytest.approx(1.0 - expected, abs=1e-12)


def test_auroc_accepts_tensors_and_bools_and_handles_constant_scores():
    labels = torch.tensor([True, False, True, False])
    assert image_auroc(labels, torch.tensor([0.9, 0.1, 0.8, 0.3])) == 1.0
    assert image_auroc(labels.numpy(), np.zeros(4)) == 0.5  # all tied


def test_pixel_auroc_equals_sklearn_on_flattened_pixels():
    rng = np.random.default_rng(0)
    masks = (rng.random((3, 1, 8, 8)) > 0.8).astype(np.float32)  # (N, 1, H, W) as the data layer
    maps = rng.random((3, 8, 8)) + masks[:, 0]
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(torch.from_numpy(masks), torch.from_numpy(maps)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "metric, args",
    [(image_auroc, ([0, 0, 0], [0.1, 0.2, 0.3])), (image_auroc, ([1, 1], [0.1, 0.2])),
     (pixel_auroc, (np.zeros((2, 4, 4)), np.random.rand(2, 4, 4))),
     (pixel_auroc, (np.ones((2, 4, 4)), np.random.rand(2, 4, 4))),
     (aupro, (np.zeros((2, 4, 4)), np.random.rand(2, 4, 4))),
     (aupro, (np.ones((2, 4, 4)), np.random.rand(2, 4, 4)))],
)
def test_single_class_gives_nan_and_warning(metric, args):
    with pytest.warns(UndefinedMetricWarning, match="single class"):
        assert np.isnan(metric(*args))


def test_warning_is_a_sklearn_undefined_metric_warning():
    from sklearn.exceptions import UndefinedMetricWarning as SklearnWarning

    assert issubclass(UndefinedMetricWarning, SklearnWarning)


@pytest.mark.parametrize(
    "call, match",
    [(lambda: image_auroc([0, 1, 1], [0.1, 0.2]), r"shapes \(3,\) and \(2,\)"),
     (lambda: image_auroc([[0, 1]], [[0.1, 0.2]]), "1-D"),
     (lambda: image_auroc([0, 2], [0.1, 0.2]), "0/1"),
     (lambda: image_auroc([0, 1], [0.1, float("nan")]), "NaN"),
     (lambda: pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5))), r"\(2, 4, 4\) and \(2, 4, 5\)"),
     (lambda: aupro(np.zeros((2, 4, 4)), np.zeros((2, 3, 4, 4))), r"\(2, 3, 4, 4\)"),
     (lambda: aupro(np.eye(4)[None], np.eye(4)[None], fpr_limit=0.0), "fpr_limit"),
     (lambda: aupro(np.eye(4)[None], np.full((1, 4, 4), np.inf)), "infinite")],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_aupro_perfect_and_inverted_maps():
    masks = np.zeros((2, 8, 8))
    masks[0, 2:4, 2:5] = 1
    masks[1, 5:8, 0:2] = 1
    assert aupro(masks, masks + 0.01 * np.random.rand(2, 8, 8)) == pytest.approx(1.0)
    assert aupro(masks, -masks) == pytest.approx(0.0, abs=1e-12)


def test_aupro_hand_computed_step_curve():
    # One 2-pixel region, 10 normal pixels (scores 9..0). Pixel A (score 10) is found first:
    # PRO 0.5 at FPR 0. Pixel B (8.5) comes after one normal pixel: PRO 1 from FPR 0.1.
    # Area to 0.3 = 0.1 * 0.5 + 0.2 * 1.0 = 0.25, normalised: 0.25 / 0.3.
    masks = np.zeros((1, 1, 12))
    masks[0, 0, :2] = 1
    maps = np.array([[[10.0, 8.5, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]])
    assert aupro(masks, maps) == pytest.approx(0.25 / 0.3)
    fpr, pro = pro_curve(masks, maps)
    assert fpr[:4] == pytest.approx([0.0, 0.0, 0.1, 0.1])
    assert pro[:4] == pytest.approx([0.0, 0.5, 0.5, 1.0])


def test_aupro_ties_give_a_diagonal_segment_interpolated_at_the_limit():
    # Pixel A scores 1, pixel B ties with all normal pixels at 0: the curve runs (0, 0.5) -> (1, 1),
    # PRO(f) = 0.5 + 0.5 f, whose integral to 0.3 is 0.15 + 0.0225 = 0.1725.
    masks = np.zeros((1, 4, 4))
    masks[0, 0, :2] = 1
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1.0
    assert aupro(masks, maps) == pytest.approx(0.1725 / 0.3)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.75)
    assert aupro(masks, np.zeros_like(maps)) == pytest.approx(0.15)  # constant map: diagonal


def test_aupro_regions_are_per_image_and_8_connected():
    # Image 0: one region of 1 pixel (found first); image 1: a diagonal region of 3 pixels at the
    # same place (never found). Per-image regions give PRO 0.5 -> AUPRO 0.5; merging across images
    # would weigh it 1/4, splitting the diagonal into 3 regions would give 1/4 as well.
    masks = np.zeros((2, 5, 5))
    masks[0, 1, 1] = 1
    masks[1, [1, 2, 3], [1, 2, 3]] = 1
    maps = np.full((2, 5, 5), 0.5)
    maps[0, 1, 1] = 1.0
    maps[1][masks[1] > 0] = 0.0
    assert aupro(masks, maps) == pytest.approx(0.5)


def _reference_aupro(masks, maps, fpr_limit):
    """Slow, literal AUPRO: a threshold loop over every distinct score."""
    defect = masks > 0.5
    regions = [ndimage.label(d, structure=np.ones((3, 3)))[0] for d in defect]
    components = [(i, regions[i] == k) for i in range(len(defect))
                  for k in range(1, regions[i].max() + 1)]
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        marked = maps >= threshold
        fpr = (marked & ~defect).sum() / (~defect).sum()
        pro = np.mean([(marked[i] & region).sum() / region.sum() for i, region in components])
        points.append((fpr, pro))
    fpr, pro = np.array(points).T
    grid_pro = np.interp(fpr_limit, fpr, pro) if fpr_limit not in fpr else None
    inside = fpr <= fpr_limit
    x, y = fpr[inside], pro[inside]
    if grid_pro is not None:
        x, y = np.append(x, fpr_limit), np.append(y, grid_pro)
    return np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / fpr_limit


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.05, 0.3, 1.0]), st.integers(3, 12))
def test_aupro_equals_brute_force_reference(seed, fpr_limit, levels):
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 6, 6))
    for image in range(3):
        top, left = rng.integers(0, 4, size=2)
        masks[image, top:top + rng.integers(1, 3), left:left + rng.integers(1, 4)] = 1
    masks[0, 5, 5] = 1  # a second region in image 0
    maps = rng.integers(0, levels, size=masks.shape) + masks * rng.integers(0, 3)  # ties
    assert aupro(masks, maps, fpr_limit) == pytest.approx(
        _reference_aupro(masks, maps, fpr_limit), abs=1e-9)
    # Invariant to strictly increasing transforms of the scores.
    assert aupro(masks, np.log1p(maps) * 5, fpr_limit) == pytest.approx(
        aupro(masks, maps, fpr_limit), abs=1e-12)


def test_metrics_on_a_realistic_test_set_without_warnings():
    # speed is measured in bench/, not asserted here
    rng = np.random.default_rng(0)
    masks = np.zeros((100, 128, 128), dtype=np.float32)
    masks[::2, 30:60, 40:80] = 1
    masks[::3, 100:110, 5:9] = 1
    maps = rng.random(masks.shape).astype(np.float32) + 0.3 * masks
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = aupro(masks, maps)
        pixel = pixel_auroc(masks, maps)
    assert 0.0 < value < 1.0 and 0.5 < pixel < 1.0


def test_auroc_interval_brackets_the_auroc_and_narrows_with_more_images():
    from maskad_core.metrics import auroc_interval

    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200):
        labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
        scores = rng.normal(size=2 * n) + labels
        low, high = auroc_interval(labels, scores)
        assert low <= image_auroc(labels, scores) <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2
    assert auroc_interval(labels, scores) == auroc_interval(labels, scores)  # seeded


def test_auroc_interval_of_a_perfect_score_is_a_point_and_one_class_is_undefined():
    from maskad_core.metrics import UndefinedMetricWarning, auroc_interval

    assert auroc_interval([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == (1.0, 1.0)
    with pytest.warns(UndefinedMetricWarning):
        low, high = auroc_interval([1, 1], [0.1, 0.2])
    assert np.isnan(low) and np.isnan(high)
    with pytest.raises(ValueError, match="level"):
        auroc_interval([0, 1], [0.1, 0.2], level=1.5)


def test_the_seed_mean_interval_is_the_single_seed_interval_for_one_seed_and_narrows_with_agreement():
    from maskad_core.metrics import auroc_interval, seeds_auroc_interval

    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(30, bool), np.ones(20, bool)]
    scores = rng.normal(size=50) + labels
    assert seeds_auroc_interval(labels, scores[None]) == auroc_interval(labels, scores)
    assert seeds_auroc_interval(labels, np.stack([scores, scores])) == auroc_interval(labels, scores)
    noisy = np.stack([scores + rng.normal(scale=2.0, size=50) for _ in range(3)])
    low, high = seeds_auroc_interval(labels, noisy)
    single = [auroc_interval(labels, row) for row in noisy]
    # averaging three noisy runs on the same resample is narrower than one noisy run's interval
    assert high - low < np.mean([h - lo for lo, h in single])
    perfect = np.stack([labels.astype(float)] * 2)
    assert seeds_auroc_interval(labels, perfect) == (1.0, 1.0)
    with pytest.raises(ValueError, match="seed_scores must be"):
        seeds_auroc_interval(labels, np.zeros((2, 7)))
