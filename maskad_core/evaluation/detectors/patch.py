"""A floor fair to parts that move: nearest neighbour of small patches among all the normal
training patches of the category, at any position and in any right-angle orientation.
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import Tensor

from maskad_core.evaluation.detectors.base import (
    DEFAULT_MAX_CHUNK_BYTES,
    FLOAT_BYTES,
    Detector,
    Setting,
    boolean,
    chunk_sizes,
    nonnegative_int,
    one_of,
    positive_int,
)

DEFAULT_MAX_BANK = 50_000
# transforms of the bank's patches: t % 4 quarter turns, after a left-right flip when t >= 4
AUGMENTS = {"none": 1, "rot90": 4, "dihedral": 8}


def _transform(patches: Tensor, codes: Tensor) -> Tensor:
    """(k, C, p, p) patches, each turned by its code's quarter turns (flipped first if code >= 4)."""
    out = patches.clone()
    for code in codes.unique().tolist():
        chosen = codes == code
        selected = patches[chosen].flip(-1) if code >= 4 else patches[chosen]
        out[chosen] = torch.rot90(selected, code % 4, dims=(-2, -1))
    return out


def _positions(size: int, patch: int, stride: int) -> Tensor:
    """Patch corners every ``stride`` pixels, the last one flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return torch.tensor(starts)


class PatchNearestNeighbour(Detector):
    """Position- and rotation-tolerant nearest neighbour of patches; no pretrained weights.

    Descriptor: a ``patch_size`` square patch averaged over ``pool`` x ``pool`` blocks (a C x p x p
    grid, p = patch_size / pool; with ``subtract_mean`` its mean per channel removed), compared by the
    mean squared difference. Memory bank: the patches at every position (stride 1) of every normal
    training image, each in ``augment``'s orientations ("rot90": the 4 quarter turns, "dihedral":
    with their mirror images, "none"), a deterministic random subsample (``seed``) of at most
    ``max_bank`` of them. Map: the test image's patches every ``stride`` pixels (the last one flush
    with the edge), each scored by its distance to its nearest neighbour among the whole bank (any
    position, any orientation); each pixel takes the mean of the scores of the patches covering it.

    Memory bound: the bank holds at most max_bank x C x p^2 x 4 bytes (50,000 RGB 4 x 4 grids:
    9.6 MB); fitting also holds the training images block-averaged (about N x C x H x W x 4 bytes);
    scoring holds the query descriptors of the images scored (B x L x C x p^2 x 4 bytes, L patches
    per image: 160 images of 128 px, 30 MB) and one (queries x bank) distance chunk within
    ``max_chunk_bytes`` (at least one pair, so a bound below one pair still runs).
    """

    name = "patch_nn"
    settings = {
        "patch_size": Setting(8, positive_int, "side of a patch, in pixels"),
        "stride": Setting(4, positive_int, "step between the scored patches, at most patch_size"),
        "pool": Setting(2, positive_int, "side of the averaged blocks; divides patch_size"),
        "augment": Setting("rot90", one_of(*AUGMENTS), "orientations of the bank's patches"),
        "subtract_mean": Setting(False, boolean, "remove each patch's mean per channel"),
        "max_bank": Setting(DEFAULT_MAX_BANK, positive_int, "most patches in the memory bank"),
        "seed": Setting(0, nonnegative_int, "seed of the bank's random subsample"),
        "max_chunk_bytes": Setting(DEFAULT_MAX_CHUNK_BYTES, positive_int,
                                   "largest (queries x bank) distance chunk, in bytes"),
    }
    patch_size: int
    stride: int
    pool: int
    augment: str
    subtract_mean: bool
    max_bank: int
    seed: int
    max_chunk_bytes: int

    def _check_settings(self) -> None:
        if self.stride > self.patch_size:
            raise ValueError(f"stride ({self.stride}) must be at most patch_size "
                             f"({self.patch_size}): every pixel is covered by a patch")
        if self.patch_size % self.pool:
            raise ValueError(f"pool ({self.pool}) must divide patch_size ({self.patch_size})")

    def _blocks(self, images: Tensor) -> Tensor:
        """(B, C, H - pool + 1, W - pool + 1): the mean of the pool x pool block at each corner."""
        return images if self.pool == 1 else F.avg_pool2d(images, self.pool, stride=1)

    def _describe(self, grids: Tensor) -> Tensor:
        """(k, C, p, p) block grids -> (k, C p p) descriptors."""
        if self.subtract_mean:
            grids = grids - grids.mean(dim=(-2, -1), keepdim=True)
        return grids.reshape(grids.shape[0], -1)

    def _fit(self, images: Tensor) -> None:
        count, _, height, width = images.shape
        if height < self.patch_size or width < self.patch_size:
            raise ValueError(f"{self.name}: patch_size {self.patch_size} does not fit in images of "
                             f"{height} x {width} px")
        rows, columns = height - self.patch_size + 1, width - self.patch_size + 1
        per_transform = count * rows * columns
        total = per_transform * AUGMENTS[self.augment]
        if total <= self.max_bank:
            index = torch.arange(total)
        else:  # O(max_bank) memory, whatever the number of candidate patches
            index = torch.tensor(sorted(random.Random(self.seed).sample(range(total), self.max_bank)))
        codes, rest = index // per_transform, index % per_transform
        image, rest = rest // (rows * columns), rest % (rows * columns)
        top, left = rest // columns, rest % columns
        steps = torch.arange(self.patch_size // self.pool) * self.pool
        grid_rows, grid_columns = top[:, None] + steps, left[:, None] + steps
        blocks = self._blocks(images)
        # advanced indices around a slice: (k, p, p, C) -> (k, C, p, p)
        grids = blocks[image[:, None, None], :, grid_rows[:, :, None], grid_columns[:, None, :]]
        self.bank = self._describe(_transform(grids.permute(0, 3, 1, 2), codes))
        self.bank_norms = self.bank.square().sum(dim=1)

    def _queries(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B x L descriptors, row corners, column corners) of the patches scored."""
        height, width = images.shape[2:]
        top = _positions(height, self.patch_size, self.stride)
        left = _positions(width, self.patch_size, self.stride)
        steps = torch.arange(self.patch_size // self.pool) * self.pool
        grid_rows, grid_columns = top[:, None] + steps, left[:, None] + steps
        # adjacent advanced indices: (B, C, rows, columns, p, p)
        grids = self._blocks(images)[:, :, grid_rows[:, None, :, None], grid_columns[None, :, None, :]]
        grids = grids.permute(0, 2, 3, 1, 4, 5).flatten(0, 2)
        return self._describe(grids), top, left

    def nearest_distances(self, queries: Tensor) -> Tensor:
        """(Q, D) descriptors -> (Q,) mean squared difference to the nearest descriptor of the bank,
        computed as |q|^2 + |b|^2 - 2 q.b in (queries x bank) chunks within ``max_chunk_bytes``."""
        n_query_chunk, n_bank_chunk = chunk_sizes(queries.shape[0], self.bank.shape[0],
                                                  FLOAT_BYTES, self.max_chunk_bytes)
        best = []
        for query in queries.split(n_query_chunk):
            nearest = torch.full((query.shape[0],), math.inf)
            for bank, norms in zip(self.bank.split(n_bank_chunk), self.bank_norms.split(n_bank_chunk),
                                   strict=True):
                distances = torch.addmm(norms[None], query, bank.T, alpha=-2)  # the bounded chunk
                torch.minimum(nearest, distances.amin(dim=1), out=nearest)
            best.append((nearest + query.square().sum(dim=1)).clamp_min_(0))
        return torch.cat(best) / queries.shape[1]

    def _map(self, images: Tensor) -> Tensor:
        count, _, height, width = images.shape
        queries, top, left = self._queries(images)
        scores = self.nearest_distances(queries).view(count, len(top), len(left))
        covers_row = (torch.arange(height) - top[:, None]).div(self.patch_size, rounding_mode="floor") == 0
        covers_col = (torch.arange(width) - left[:, None]).div(self.patch_size, rounding_mode="floor") == 0
        covers_row, covers_col = covers_row.float(), covers_col.float()  # (rows, H), (columns, W)
        total = torch.einsum("iy,bij,jx->byx", covers_row, scores, covers_col)
        return total / (covers_row.sum(dim=0)[:, None] * covers_col.sum(dim=0)[None, :])
