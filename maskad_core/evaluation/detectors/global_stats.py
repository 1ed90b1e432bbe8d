"""Confound probes: one global statistic of the whole image, scored as its distance from the normal
training images' distribution of it. They are not defect detectors: they see no defect, only how
bright ("brightness") or how contrasted ("contrast") the image is. A probe that separates a test
split (MVTec AD screw: the mean grey level alone reaches image AUROC 1.000) shows a confound of the
data, which any detector, the masked autoencoder included, may be exploiting instead of the defects.
``image_norm.standardize_images`` is the control that removes both statistics.

"mean_colour" asks what is left after the control: it scores an image by eq. 1 of a reconstruction
that is the image's own mean colour (its variance over pixels), what a model that has learned
nothing else would score. The control's cut to [0, 1] turns a difference in the tails of the
images' histograms into one of this variance (bench/results/control_residue.md).

The map is constant: every pixel holds the image's score, so the same smoothing (which leaves a
constant map unchanged and is skipped), reductions (max, mean and top-k all equal the score) and
image metrics apply; pixel metrics of a constant map mean nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from maskad_core.evaluation.detectors.base import Detector, Setting, positive_number

# Floor of the statistic's std over the training images, in [0, 1] intensity units (a quarter of a
# grey level of 255): one training image, or identical ones, have std 0.
STAT_STD_FLOOR = 1e-3


class _GlobalStatistic(Detector):
    """Per channel, the mean and std (floored at ``stat_std_floor``) of ``statistic`` over the
    normal training images; an image's score is its absolute z-score averaged over channels."""

    settings = {"stat_std_floor": Setting(STAT_STD_FLOOR, positive_number,
                                          "floor of the statistic's std over the training images")}
    constant_map = True
    stat_std_floor: float

    @staticmethod
    def statistic(images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C): one number per image and channel."""
        raise NotImplementedError

    def _fit(self, images: Tensor) -> None:
        # population std (correction 0): 0 for a single image, where the floor holds
        std, self.mean = torch.std_mean(self.statistic(images), dim=0, correction=0)
        self.std = std.clamp_min(self.stat_std_floor)

    def image_scores(self, images: Tensor) -> Tensor:
        """(B,) absolute z-scores of the images' statistic, averaged over channels."""
        return self._scores(self._checked(images))

    def _scores(self, images: Tensor) -> Tensor:
        return ((self.statistic(images) - self.mean) / self.std).abs().mean(dim=1)

    def _map(self, images: Tensor) -> Tensor:
        height, width = images.shape[2:]
        return self._scores(images)[:, None, None].expand(-1, height, width).contiguous()


class Brightness(_GlobalStatistic):
    """Confound probe, not a defect detector: the image's mean intensity per channel (mean over
    pixels), scored as its absolute z-score against the normal training images."""

    name = "brightness"

    @staticmethod
    def statistic(images: Tensor) -> Tensor:
        return images.mean(dim=(2, 3))


class Contrast(_GlobalStatistic):
    """Confound probe, not a defect detector: the image's standard deviation of intensity per
    channel (over pixels), scored as its absolute z-score against the normal training images."""

    name = "contrast"

    @staticmethod
    def statistic(images: Tensor) -> Tensor:
        return images.std(dim=(2, 3), correction=0)


class MeanColourError(Detector):
    """Confound probe, not a defect detector: eq. 1 of a reconstruction that is the image's own
    mean colour, i.e. the image's variance over pixels averaged over channels. Nothing is fitted:
    a model that has learned only the mean colour of each image would score exactly this."""

    name = "mean_colour"
    constant_map = True

    def _fit(self, images: Tensor) -> None:
        """Nothing to learn (the training images only fix the expected image shape)."""

    def image_scores(self, images: Tensor) -> Tensor:
        """(B,) the images' variance over pixels, averaged over channels."""
        return self._scores(self._checked(images))

    @staticmethod
    def _scores(images: Tensor) -> Tensor:
        return images.var(dim=(2, 3), correction=0).mean(dim=1)

    def _map(self, images: Tensor) -> Tensor:
        height, width = images.shape[2:]
        return self._scores(images)[:, None, None].expand(-1, height, width).contiguous()
