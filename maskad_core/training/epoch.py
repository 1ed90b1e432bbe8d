"""One epoch of training, as a plain function: ``train_one_epoch`` (the official MAE's
``engine_pretrain.train_one_epoch`` is the model), the per-image seeding of the data it reads, the
masks of a batch, and the tally of its losses that stays on the device until the epoch ends.
:mod:`maskad_core.training.train` is the driver around it: data, model, checkpoints, resumption, the record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm  # not tqdm.auto, which calls iter() on a DataLoader twice

from maskad_core.masking import make_masks
from maskad_core.training.config import TrainConfig
from maskad_core.training.runtime import autocast, derive_seed

LOSS_COMPONENTS = ("total", "ssim", "l1", "lpips")
PROGRESS_EVERY = 20  # steps between progress-bar updates (each one reads the loss from the device)


class SeededItems(Dataset):
    """Seeds torch's generator from (seed, epoch, index) before reading each item, so that an
    image's augmentation does not depend on the number of DataLoader workers or processes."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        torch.manual_seed(derive_seed(self.seed, "item", self.epoch, index))
        return self.dataset[index]


def batch_masks(config: TrainConfig, num_patches: int, batch: int, generator: torch.Generator):
    """One independent set of masks per image: (B, n, L)."""
    return torch.stack([make_masks(config.masking, num_patches, config.mask_ratio, generator)
                        for _ in range(batch)])


class EpochTally:
    """One epoch's loss sums and its first non-finite loss, kept as tensors on the training device,
    so that a step never waits for the device; :meth:`read` brings them to the host once."""

    def __init__(self, device: torch.device):
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(len(LOSS_COMPONENTS), dtype=dtype, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_loss = torch.zeros((), device=device)
        self.images = 0

    def add(self, loss: torch.Tensor, parts: dict[str, torch.Tensor], count: int, step: int) -> None:
        self.sums += torch.stack([parts[k] for k in LOSS_COMPONENTS]).to(self.sums.dtype) * count
        self.images += count
        first = ~torch.isfinite(loss.detach()) & (self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss.detach().float(), self.bad_loss)

    def means(self) -> dict[str, str]:
        """The running mean of each loss component, for the progress bar (reads the device)."""
        values = (self.sums / max(self.images, 1)).tolist()
        return {k: f"{v:.4f}" for k, v in zip(LOSS_COMPONENTS, values, strict=True)}

    def read(self) -> tuple[torch.Tensor, int | None, float | None]:
        """The epoch's one read of the device: (loss sums and image count, float64 on the CPU, as
        the processes add them up; step and value of the first non-finite loss, or None, None)."""
        dtype = self.sums.dtype
        host = torch.cat([self.sums, self.bad_step.to(dtype).view(1), self.bad_loss.to(dtype).view(1)])
        host = host.cpu().double()
        totals = torch.cat([host[:-2], torch.tensor([float(self.images)], dtype=torch.float64)])
        step = int(host[-2])
        return totals, (None if step < 0 else step), (None if step < 0 else float(host[-1]))


def train_one_epoch(model: torch.nn.Module, criterion: torch.nn.Module, loader: DataLoader,
                    optimizer: torch.optim.Optimizer, scheduler, masks_for: Callable[[int], torch.Tensor],
                    *, device: torch.device, grad_clip: float = 0.0, step_model=None,
                    progress: tqdm | None = None,
                    after_step: Callable[[int], None] | None = None) -> EpochTally:
    """One pass over ``loader``: reconstruct each batch under the masks ``masks_for(batch_size)``
    gives, one optimiser and scheduler step per batch. ``step_model`` is the module that runs the
    forward pass (the DDP wrapper of ``model``, or ``model``). Loss values stay on the device and
    are read once, by the caller, from the returned tally (a read per step would make the host
    wait for the device at every step)."""
    step_model = step_model or model
    model.train()
    tally = EpochTally(device)
    started = time.perf_counter()
    for step, batch in enumerate(progress if progress is not None else loader):
        images = batch["image"].to(device, non_blocking=True)
        masks = masks_for(images.shape[0])
        if device.type == "cuda":
            masks = masks.pin_memory()  # copied without waiting; checked on the host
        with autocast(device):
            recon = step_model(images, masks)
        loss, parts = criterion(recon.float(), images)
        tally.add(loss, parts, images.shape[0], step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        if progress is not None and not progress.disable and step % PROGRESS_EVERY == 0:
            rate = tally.images / max(time.perf_counter() - started, 1e-9)  # a host read, for a watcher
            progress.set_postfix({**tally.means(), "img/s": f"{rate:.1f}"}, refresh=False)
        if after_step is not None:
            after_step(step)
    return tally
