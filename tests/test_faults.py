"""Faults found on main, each pinned by a test that failed before its fix: non-finite settings and
weights, an overwrite that deleted foreign files, private run files, runs blind to changed data,
test-split problems found after training, tracebacks for user-fixable path, device and checkpoint
problems, and the masking modes declared in one place."""

from __future__ import annotations

import pytest

from maskad_core import masking
from maskad_core.config import TrainConfig


# ------------------------------------------------------------------ 1. non-finite settings
@pytest.mark.parametrize("override", ["lr=inf", "lr=nan", "weight_decay=-inf", "smooth_sigma=nan",
                                      "mask_ratio=nan", "grad_clip=inf"])
def test_non_finite_settings_are_refused_naming_key_and_value(override):
    key, _, value = override.partition("=")
    config = TrainConfig().with_overrides([override])
    with pytest.raises(ValueError, match=f"{key} must be a finite number, got {value}"):
        config.validate()


# ------------------------------------------------------------------ 7. masking declared once
def test_masking_check_names_modes_ratios_and_patches():
    assert masking.check("complementary", 0.75) == 4
    assert masking.check("random", 0.75, num_patches=4) == 1
    with pytest.raises(ValueError, match="test_masking 'grid' is not one of: complementary, random"):
        masking.check("grid", 0.75, setting="test_masking")
    with pytest.raises(ValueError, match=r"valid ratios are 1 - 1/n: 0\.5, 0\.6667, 0\.75"):
        masking.check("complementary", 0.7)
    with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\) for random masking"):
        masking.check("random", 1.0)
    with pytest.raises(ValueError, match="gives 4 views but masking=complementary has only 3 patches"):
        masking.check("complementary", 0.75, num_patches=3)
    assert masking.views_per_image("complementary", 0.5) == 2
    assert masking.views_per_image("random", 0.5) == 1


def test_config_validates_masking_through_masking_check(monkeypatch):
    calls = []
    real = masking.check
    monkeypatch.setattr(masking, "check", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    TrainConfig(test_masking="random").validate()
    assert [(a[0], k.get("setting")) for a, k in calls] == [("complementary", "masking"),
                                                            ("random", "test_masking")]
    # the test masking's views must fit the patches too, not only the training masking's
    with pytest.raises(ValueError, match="test_masking=complementary has only 4 patches"):
        TrainConfig(masking="random", test_masking="complementary", mask_ratio=0.9,
                    image_size=32).validate()
    views = []
    monkeypatch.setattr(masking, "views_per_image", lambda *a: views.append(a) or 7)
    assert TrainConfig().num_views == 7 and views == [("complementary", 0.75)]
