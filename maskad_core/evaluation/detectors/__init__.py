"""Training-free detectors: the floor under every number the masked autoencoder reports, and the
probes of its confounds.

Each detector learns nothing: it is fitted per category on the same normal training images the MAE
would see and returns anomaly maps (B, H, W) like the MAE's, so the same smoothing, reductions,
metrics and tables consume them (``baselines.evaluate_baseline``).

- "gaussian" (``PixelGaussian``): the mean and std of the normal images at each pixel and channel;
  the map is the squared z-score averaged over channels.
- "nn" (``PixelNearestNeighbour``): at each pixel, the smallest squared error (averaged over
  channels) to any normal training image at that pixel; chunked under a stated memory bound.
- "patch_nn" (``PatchNearestNeighbour``): each patch's distance to its nearest normal training
  patch at any position and right-angle orientation: fair to parts that move (screw).
- "brightness", "contrast" (``Brightness``, ``Contrast``): confound probes, not defect detectors:
  the image's mean or standard deviation of intensity against the normal images'; a constant map.
- "mean_colour" (``MeanColourError``): confound probe: eq. 1 of a reconstruction that is the image's
  own mean colour (its variance), what a model that learned only the mean colour scores.

The two pixel detectors compare pixel (x, y) with pixel (x, y): strong where the parts are aligned
(bottle), weak by construction where they are not (screw). Every detector is declared once, in
``DETECTORS``, with its settings (defaults and validation) on its class; ``make_detector`` builds one
by name and refuses unknown names and settings.
"""

from __future__ import annotations

from typing import Any

from maskad_core.evaluation.detectors.base import (
    DEFAULT_MAX_CHUNK_BYTES,
    Detector,
    Setting,
    chunk_sizes,
)
from maskad_core.evaluation.detectors.global_stats import (
    STAT_STD_FLOOR,
    Brightness,
    Contrast,
    MeanColourError,
)
from maskad_core.evaluation.detectors.patch import DEFAULT_MAX_BANK, PatchNearestNeighbour
from maskad_core.evaluation.detectors.pixel import STD_FLOOR, PixelGaussian, PixelNearestNeighbour

_Detector = Detector  # the name the detectors' base class had before this package

DETECTORS: dict[str, type[Detector]] = {
    "gaussian": PixelGaussian,
    "nn": PixelNearestNeighbour,
    "patch_nn": PatchNearestNeighbour,
    "brightness": Brightness,
    "contrast": Contrast,
    "mean_colour": MeanColourError,
}
METHODS = tuple(DETECTORS)
# floors localise (a map that varies over the image); probes give one number per image (constant map)
FLOOR_METHODS = tuple(name for name, cls in DETECTORS.items() if not cls.constant_map)
PROBE_METHODS = tuple(name for name, cls in DETECTORS.items() if cls.constant_map)
HEADLINE_METRIC = "image_auroc_max"
DEFAULT_SMOOTH_SIGMA = 2.0

__all__ = [
    "DEFAULT_MAX_BANK", "DEFAULT_MAX_CHUNK_BYTES", "DEFAULT_SMOOTH_SIGMA", "DETECTORS",
    "FLOOR_METHODS", "HEADLINE_METRIC", "METHODS", "PROBE_METHODS", "STAT_STD_FLOOR", "STD_FLOOR",
    "Brightness", "Contrast", "Detector", "MeanColourError", "PatchNearestNeighbour", "PixelGaussian",
    "PixelNearestNeighbour", "Setting", "chunk_sizes", "detector_class", "detector_settings",
    "make_detector",
]


def detector_class(name: str) -> type[Detector]:
    """The registered class of detector ``name``; ValueError listing the allowed names otherwise."""
    if not isinstance(name, str) or name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}: method must be one of {', '.join(METHODS)}")
    return DETECTORS[name]


def detector_settings(name: str) -> dict[str, Any]:
    """{setting: default} of detector ``name``, in declaration order."""
    return {key: setting.default for key, setting in detector_class(name).settings.items()}


def make_detector(name: str, /, **settings) -> Detector:
    """A fresh, unfitted detector ``name`` of ``DETECTORS`` with ``settings`` (the others at their
    defaults). ValueError on an unknown name (listing the allowed names), an unknown setting (naming
    it and the detector's settings with their defaults) or a bad value."""
    return detector_class(name)(**settings)
