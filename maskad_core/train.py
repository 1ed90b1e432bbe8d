"""Training: one masked autoencoder on every given category at once (the paper's multi-class setting).

``train(config)`` is the whole pipeline: it trains (or resumes, or re-uses a finished run), then
evaluates the test split and writes the run folder described in :mod:`maskad_core.runs`.

Exact resumption: every random stream (model init aside) is re-seeded at the start of each epoch from
(seed, epoch, rank): torch's global generator, numpy, python's ``random``, the DataLoader's generator
(shuffling, worker seeds) and the mask generator; each training image's augmentation is seeded from
(seed, epoch, image index), so ``num_workers`` does not change the result either. A checkpoint is written at
each epoch's end, so a run killed at any moment restarts from the last finished epoch and, on CPU,
ends bit-identical to an uninterrupted run.

Distributed: ``torchrun --nproc_per_node=N -m maskad_core train [maskad train options]`` (or
``maskad train --nproc N``) trains with DistributedDataParallel (see :mod:`maskad_core.distributed`).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm  # not tqdm.auto, which calls iter() on a DataLoader twice

from maskad_core import runs
from maskad_core.config import TrainConfig
from maskad_core.distributed import Distributed
from maskad_core.evaluate import evaluate_model, evaluate_twin, format_table, metrics_table
from maskad_core.losses import ReconstructionLoss
from maskad_core.masking import make_masks
from maskad_core.model import build_model
from maskad_core.runtime import (
    autocast,
    derive_seed,
    deterministic,
    seed_everything,
    seed_worker,
    select_device,
    versions,
)
from maskad_core.splits import data_root_of, dataset_samples, open_dataset

LOSS_COMPONENTS = ("total", "ssim", "l1", "lpips")
PROGRESS_EVERY = 20  # steps between progress-bar updates (each one reads the loss from the device)
CHECKPOINT_FORMAT = 1


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------ building blocks
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


def lr_factor(step: int, total_steps: int, warmup_steps: float) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1.0)
    progress = min((step - warmup_steps) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases, norms and the mask token (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2))


# ------------------------------------------------------------------ hooks (tests inject failures here)
def _after_step(epoch: int, step: int) -> None:
    """Called after every optimiser step (epoch and step count from 0)."""


def _after_epoch(epoch: int) -> None:
    """Called after each epoch's checkpoint is written (epoch counts from 0)."""


def _train_epochs(context: _Context) -> None:
    """The training loop proper (a function of its own so that tests can tell it ran)."""
    context.loop()


# ------------------------------------------------------------------ the training run
class _EpochTally:
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


class _Context:
    """Everything one training run holds: data, model, optimiser, schedule, progress."""

    def __init__(self, config: TrainConfig, path: Path, distributed: Distributed, quiet: bool):
        self.config, self.path, self.dist, self.quiet = config, path, distributed, quiet
        self.device = select_device(config.device, distributed.local_rank)
        if config.batch_size % distributed.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                             f"{distributed.world_size} processes")
        self.local_batch = config.batch_size // distributed.world_size

        self.data_root, self.synthetic = data_root_of(config), config.data_root is None
        self.train_set, self.train_full = open_dataset(config, "train", self.data_root, augment=True)
        self.seeded_train_set = SeededItems(self.train_set, config.seed)
        if distributed.active:
            self.sampler = DistributedSampler(self.train_set, num_replicas=distributed.world_size,
                                              rank=distributed.rank, shuffle=True, seed=config.seed)
            self.loader_generator = None
        else:
            self.loader_generator = torch.Generator()
            self.sampler = RandomSampler(self.train_set, generator=self.loader_generator)
        self.loader = DataLoader(
            self.seeded_train_set, batch_size=self.local_batch, sampler=self.sampler,
            num_workers=config.num_workers, worker_init_fn=seed_worker,
            generator=self.loader_generator, pin_memory=self.device.type == "cuda",
        )
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = config.effective_warmup_epochs() * self.steps_per_epoch

        seed_everything(config.seed)  # model initialisation
        self.model = build_model(config).to(self.device)
        self.criterion = ReconstructionLoss(config.ssim_weight, config.l1_weight, config.lpips_weight,
                                            lpips=config.lpips).to(self.device)
        self.optimizer = make_optimizer(self.model, config)
        total, warmup = self.total_steps, self.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, warmup))
        self.step_model = self.model
        if distributed.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.autocast = autocast(self.device)
        self.mask_generator = torch.Generator()

        self.epoch = 0  # epochs finished
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.images_seen = 0

    # -- checkpoints
    def checkpoint(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "config_hash": self.config.hash(), "epoch": self.epoch,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "history": self.history,
                "train_seconds": self.train_seconds, "images_seen": self.images_seen,
                "world_size": self.dist.world_size}

    def restore(self, state: dict) -> None:
        if state.get("config_hash") != self.config.hash():
            raise ValueError(f"checkpoint in {self.path} belongs to another configuration")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.train_seconds = float(state["train_seconds"])
        self.images_seen = int(state["images_seen"])

    def save(self) -> None:
        if self.dist.is_main:
            runs.atomic_torch_save(self.checkpoint(), self.path / runs.CHECKPOINT_FILE)
            if self.epoch in runs.snapshot_epochs(self.config.epochs):
                runs.atomic_torch_save(self.model.state_dict(),
                                       self.path / runs.SNAPSHOT_FILE.format(epoch=self.epoch))

    # -- the loop
    def seed_epoch(self, epoch: int) -> None:
        seed, rank = self.config.seed, self.dist.rank
        self.seeded_train_set.epoch = epoch
        seed_everything(derive_seed(seed, "global", epoch, rank))
        self.mask_generator.manual_seed(derive_seed(seed, "masks", epoch, rank))
        if self.loader_generator is not None:
            self.loader_generator.manual_seed(derive_seed(seed, "loader", epoch))
        else:
            self.sampler.set_epoch(epoch)

    def loop(self) -> None:
        """Train epoch by epoch. Loss values stay on the device during an epoch and are read once
        at its end (a read per step would make the host wait for the device at every step)."""
        config = self.config
        self.model.train()
        num_patches = self.model.num_patches
        while self.epoch < config.epochs:
            epoch = self.epoch
            self.seed_epoch(epoch)
            tally = _EpochTally(self.device)
            started = time.perf_counter()
            bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                       disable=self.quiet or not self.dist.is_main, dynamic_ncols=True)
            for step, batch in enumerate(bar):
                images = batch["image"].to(self.device, non_blocking=True)
                masks = batch_masks(config, num_patches, images.shape[0], self.mask_generator)
                if self.device.type == "cuda":
                    masks = masks.pin_memory()  # copied without waiting; checked on the host
                with self.autocast:
                    recon = self.step_model(images, masks)
                loss, parts = self.criterion(recon.float(), images)
                tally.add(loss, parts, images.shape[0], step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                if not bar.disable and step % PROGRESS_EVERY == 0:  # a host read, for a watcher only
                    rate = tally.images * self.dist.world_size / max(time.perf_counter() - started, 1e-9)
                    bar.set_postfix({**tally.means(), "img/s": f"{rate:.1f}"}, refresh=False)
                _after_step(epoch, step)
            bar.close()
            totals, bad_step, bad_loss = tally.read()
            self.check_finite(bad_step, bad_loss, epoch)
            sums = self.dist.all_reduce(totals, self.device)
            seconds = time.perf_counter() - started
            images = int(sums[-1].item())
            row = {"epoch": epoch + 1, **{k: sums[i].item() / max(images, 1)
                                          for i, k in enumerate(LOSS_COMPONENTS)},
                   "lr": self.scheduler.get_last_lr()[0], "images": images, "seconds": seconds,
                   "images_per_s": images / max(seconds, 1e-9)}
            self.history.append(row)
            self.train_seconds += seconds
            self.images_seen += images
            self.epoch = epoch + 1
            self.save()
            if not self.quiet and self.dist.is_main:
                tqdm.write(f"epoch {row['epoch']}/{config.epochs}  loss {row['total']:.4f}  "
                           f"ssim {row['ssim']:.4f}  l1 {row['l1']:.4f}  lpips {row['lpips']:.4f}  "
                           f"{row['images_per_s']:.1f} img/s")
            _after_epoch(epoch)

    def check_finite(self, step: int | None, value: float | None, epoch: int) -> None:
        """Stop when a step of the epoch (``step``, its loss ``value``) or of another process had a
        non-finite loss, before the epoch's checkpoint is written: the last good one stays."""
        bad = torch.tensor([0.0 if step is None else 1.0])
        # every rank must stop together, or the others wait forever in the next all-reduce
        if self.dist.all_reduce(bad, self.device).item() == 0:
            return
        last = (f"the last good checkpoint ({self.path / runs.CHECKPOINT_FILE}, after epoch "
                f"{self.epoch}) is kept" if self.epoch > 0 else "no epoch had finished yet")
        what = f"loss is {value} at epoch {epoch + 1} step {step + 1}" if step is not None else \
            f"loss is not finite in another process at epoch {epoch + 1}"
        raise TrainingDivergedError(f"{what} (counting from 1); {last}. Try a lower lr or grad_clip > 0.")

    def data_description(self) -> dict:
        train_counts: dict[str, int] = {}
        for sample in dataset_samples(self.train_set):
            train_counts[sample.category] = train_counts.get(sample.category, 0) + 1
        return {"root": str(self.data_root), "synthetic": self.synthetic,
                "image_size": self.config.image_size, "categories": list(self.train_full.categories),
                "train_counts": train_counts}

    def training_record(self) -> dict:
        return {"epochs": self.config.epochs, "steps_per_epoch": self.steps_per_epoch,
                "warmup_epochs_effective": self.config.effective_warmup_epochs(),
                "wall_time_s": self.train_seconds,
                "images_per_s": self.images_seen / max(self.train_seconds, 1e-9),
                "images_seen": self.images_seen, "device": str(self.device),
                "autocast": "bfloat16" if self.device.type == "cuda" else "off",
                "world_size": self.dist.world_size, "lpips_active": self.criterion.lpips_active,
                "lpips_reason": self.criterion.lpips_reason,
                "final_loss": self.history[-1]["total"] if self.history else float("nan")}


def train(config: TrainConfig, *, resume: bool = True, quiet: bool = False) -> runs.Run:
    """Train ``config`` (multi-class), evaluate on the test split, and return its finished Run.

    A finished run with the same configuration hash is returned as it is, without training; a
    finished run that differs only in scoring settings lends its training (``evaluate_twin``). An
    unfinished one is resumed from its last checkpoint when ``resume`` (the default), else
    restarted from scratch.
    """
    config = TrainConfig(**config.to_dict()).validate()
    path = runs.run_path(config)
    if (path / runs.DONE_FILE).is_file():
        return runs.Run(path)
    distributed = Distributed.from_env(config.device)
    twin = runs.find_trained_twin(config) if not distributed.active else None
    if twin is not None:
        distributed.close()
        return evaluate_twin(config, twin, path, quiet)
    try:
        if distributed.active and not distributed.is_main and config.data_root is None:
            distributed.barrier()  # rank 0 generates the synthetic data set first
        if distributed.is_main and config.data_root is None:
            data_root_of(config)
            distributed.barrier()
        context = _Context(config, path, distributed, quiet)  # bad data fails here, before any file
        lock = runs.run_lock(path) if distributed.is_main else contextlib.nullcontext()
        with lock, deterministic(context.device):
            _run(context, resume)
        distributed.barrier()
    finally:
        distributed.close()
    return runs.Run(path)


def _run(context: _Context, resume: bool) -> None:
    path, config = context.path, context.config
    if context.dist.is_main:
        runs.atomic_write_text(path / runs.CONFIG_FILE, config.to_yaml())
    checkpoint = path / runs.CHECKPOINT_FILE
    context.dist.barrier()  # every rank sees the same checkpoint state
    if checkpoint.is_file() and resume:
        context.restore(torch.load(checkpoint, map_location=context.device, weights_only=True))
        if not context.quiet and context.dist.is_main:
            print(f"resuming {path} after epoch {context.epoch}/{config.epochs}")
    context.dist.barrier()
    if checkpoint.is_file() and not resume and context.dist.is_main:
        checkpoint.unlink()
    if context.epoch < config.epochs:
        _train_epochs(context)
    if context.dist.is_main:
        finish_run(context)


def finish_run(context: _Context) -> None:
    """Evaluate on the test split and write metrics.json, history.csv, scores.csv, then DONE."""
    path = context.path
    evaluation, scores = evaluate_model(context.model, context.config, context.data_root,
                                        device=context.device, quiet=context.quiet)
    history = pd.DataFrame(context.history)
    metrics = {
        "run": path.name,
        "config_hash": context.config.hash(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {**context.data_description(), "test_counts": evaluation.pop("test_counts")},
        "training": context.training_record(),
        "history": context.history,
        **evaluation,
        "versions": versions(),
        "config": context.config.to_dict(),
    }
    runs.write_csv(path / runs.HISTORY_FILE, history)
    runs.write_csv(path / runs.SCORES_FILE, scores)
    runs.write_json(path / runs.METRICS_FILE, metrics)
    runs.atomic_write_text(path / runs.DONE_FILE, metrics["finished"] + "\n")
    if not context.quiet:
        print(format_table(metrics_table(metrics)))
