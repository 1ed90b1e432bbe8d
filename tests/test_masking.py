"""Invariants of the complementary and random masks (paper Sec. 1.2, eq. 2)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from maskad_core.masking import (
    complementary_masks,
    make_masks,
    num_views,
    random_masks,
    valid_mask_ratios,
)

VIEWS = st.integers(min_value=2, max_value=10)
PATCHES = st.sampled_from([4, 16, 49, 64, 196, 197])


@given(n=VIEWS, num_patches=PATCHES, seed=st.integers(0, 2**31 - 1))
@settings(max_examples=60, deadline=None)
def test_complementary_views_partition_the_image(n, num_patches, seed):
    ratio = 1 - 1 / n
    if num_patches < n:
        with pytest.raises(ValueError, match="num_patches"):
            complementary_masks(num_patches, ratio)
        return
    masks = complementary_masks(num_patches, ratio, torch.Generator().manual_seed(seed))
    assert masks.dtype == torch.bool and masks.shape == (n, num_patches)
    visible = ~masks
    # eq. 2: the visible parts sum to the all-ones map, so each patch is masked in n - 1 views
    assert torch.equal(visible.sum(0), torch.ones(num_patches, dtype=torch.long))
    assert torch.equal(masks.sum(0), torch.full((num_patches,), n - 1))
    counts = visible.sum(1)
    assert int(counts.max() - counts.min()) <= 1
    assert int(counts.sum()) == num_patches


def test_uneven_split_of_196_patches():
    for ratio, n in ((0.8, 5), (0.9, 10)):
        counts = (~complementary_masks(196, ratio)).sum(1)
        assert len(counts) == n
        assert set(counts.tolist()) == {196 // n, 196 // n + 1}


def test_paper_setting_gives_four_views_of_49_patches():
    masks = complementary_masks(196, 0.75)
    assert masks.shape == (4, 196)
    assert (~masks).sum(1).tolist() == [49, 49, 49, 49]


@pytest.mark.parametrize("ratio", [0.7, 0.6, 0.95 + 1e-3, 0.0, 1.0, -0.5, 1.5])
def test_invalid_ratio_names_the_valid_ones(ratio):
    with pytest.raises(ValueError, match=r"0\.5, 0\.6667, 0\.75, 0\.8"):
        num_views(ratio)


def test_valid_ratios_accepted_within_tolerance():
    assert [num_views(r) for r in valid_mask_ratios()] == list(range(2, 11))
    assert num_views(0.75 + 1e-8) == 4
    assert num_views(2 / 3) == 3


def test_masks_are_reproducible_from_a_generator():
    a = complementary_masks(64, 0.75, torch.Generator().manual_seed(3))
    b = complementary_masks(64, 0.75, torch.Generator().manual_seed(3))
    c = complementary_masks(64, 0.75, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@given(num_patches=PATCHES, ratio=st.sampled_from([0.5, 0.75, 0.8, 0.9]))
@settings(max_examples=30, deadline=None)
def test_random_mask_hides_round_r_times_patches(num_patches, ratio):
    masks = random_masks(num_patches, ratio)
    assert masks.shape == (1, num_patches) and masks.dtype == torch.bool
    assert int(masks.sum()) == min(round(ratio * num_patches), num_patches - 1)


def test_make_masks_dispatches_and_rejects_unknown_modes():
    assert make_masks("complementary", 16, 0.5).shape == (2, 16)
    assert make_masks("random", 16, 0.5).shape == (1, 16)
    with pytest.raises(ValueError, match="complementary, random"):
        make_masks("checkerboard", 16, 0.5)


def test_evaluation_masks_stack_independent_partitions_of_the_evaluation_masking():
    from maskad_core.evaluation.evaluate import image_masks
    from maskad_core.training.config import TrainConfig

    config = TrainConfig(test_partitions=3)
    masks = image_masks(config, 16, [0, 1])
    assert masks.shape == (2, 3 * 4, 16)
    # each partition's visible parts cover every patch once: every patch masked 3 * (4 - 1) times
    assert (masks.sum(dim=1) == 9).all()
    assert not torch.equal(masks[0, :4], masks[0, 4:8])  # the draws differ
    assert torch.equal(masks, image_masks(config, 16, [0, 1]))  # and are seeded by image index
    crossed = image_masks(TrainConfig(test_masking="random"), 16, [0])
    assert crossed.shape == (1, 1, 16) and crossed.sum() == 12
