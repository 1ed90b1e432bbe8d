"""Training: one masked autoencoder on every given category at once (the paper's multi-class setting).

``train(config)`` trains (or resumes, or re-uses a trained run or its twin's training) and writes
the training part of the run folder described in :mod:`maskad_core.training.runs`. It knows nothing
of evaluation: ``maskad_core.evaluation.run_record.train_and_evaluate`` trains, then evaluates.

Exact resumption: every random stream (model init aside) is re-seeded at the start of each epoch from
(seed, epoch, rank): torch's global generator, numpy, python's ``random``, the DataLoader's generator
(shuffling, worker seeds) and the mask generator; each training image's augmentation is seeded from
(seed, epoch, image index), so ``num_workers`` does not change the result either. A checkpoint is written at
each epoch's end, so a run killed at any moment restarts from the last finished epoch and, on CPU,
ends bit-identical to an uninterrupted run.

Distributed: ``torchrun --nproc_per_node=N -m maskad_core train [maskad train options]`` (or
``maskad train --nproc N``) trains with DistributedDataParallel (see :mod:`maskad_core.training.distributed`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm  # not tqdm.auto, which calls iter() on a DataLoader twice

from maskad_core.data.paths import ensure_home
from maskad_core.losses import ReconstructionLoss
from maskad_core.model import build_model
from maskad_core.training import runs
from maskad_core.training.config import TrainConfig
from maskad_core.training.distributed import Distributed
from maskad_core.training.epoch import (
    LOSS_COMPONENTS,
    EpochTally,
    SeededItems,
    batch_masks,
    train_one_epoch,
)
from maskad_core.training.runtime import (
    derive_seed,
    deterministic,
    seed_everything,
    seed_worker,
    select_device,
    show_progress,
)
from maskad_core.training.splits import (
    check_data,
    data_fingerprint,
    data_root_of,
    dataset_samples,
    open_dataset,
)
from maskad_core.training.threads import threads_for

CHECKPOINT_FORMAT = 1


class NonFiniteStateError(ValueError):
    """Weights (or other state) about to be saved hold NaN or infinite values."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------ building blocks
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
    # the fused kernel: one pass over all parameters instead of a dozen element-wise ops per
    # tensor (a third of the step's optimiser time on the CPU; bench/results/training.md)
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                             fused=fused or None)


# ------------------------------------------------------------------ what an observer may hook in
@dataclass
class Callbacks:
    """Optional observers of a training run (tests use them to stop a run at a chosen moment).
    ``after_step(epoch, step)`` runs after every optimiser step, ``after_epoch(epoch)`` after each
    epoch's checkpoint is written, ``before_evaluation()`` between training and evaluation
    (``train_and_evaluate``; epochs and steps count from 0)."""

    after_step: Callable[[int, int], None] | None = None
    after_epoch: Callable[[int], None] | None = None
    before_evaluation: Callable[[], None] | None = None


# ------------------------------------------------------------------ the training run
class TrainingRun:
    """Everything one training run holds: data, model, optimiser, schedule, progress."""

    def __init__(self, config: TrainConfig, path: Path, distributed: Distributed, quiet: bool):
        self.config, self.path, self.dist, self.quiet = config, path, distributed, quiet
        self.device = select_device(config.device, distributed.local_rank)
        if config.batch_size % distributed.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                             f"{distributed.world_size} processes")
        self.data_root, self.synthetic = data_root_of(config), config.data_root is None
        self._open_data()
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
        self.mask_generator = torch.Generator()
        self.epoch = 0  # epochs finished
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.images_seen = 0

    def _open_data(self) -> None:
        config, distributed = self.config, self.dist
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
            self.seeded_train_set, batch_size=config.batch_size // distributed.world_size,
            sampler=self.sampler, num_workers=config.num_workers, worker_init_fn=seed_worker,
            generator=self.loader_generator, pin_memory=self.device.type == "cuda",
        )
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = config.effective_warmup_epochs() * self.steps_per_epoch

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
            check_finite_state(self.model.state_dict(), f"the weights after epoch {self.epoch}")
            runs.atomic_torch_save(self.checkpoint(), self.path / runs.CHECKPOINT_FILE)
            if self.epoch in runs.snapshot_epochs(self.config.epochs):
                runs.atomic_torch_save(self.model.state_dict(),
                                       self.path / runs.SNAPSHOT_FILE.format(epoch=self.epoch))

    # -- the epochs
    def seed_epoch(self, epoch: int) -> None:
        seed, rank = self.config.seed, self.dist.rank
        self.seeded_train_set.epoch = epoch
        seed_everything(derive_seed(seed, "global", epoch, rank))
        self.mask_generator.manual_seed(derive_seed(seed, "masks", epoch, rank))
        if self.loader_generator is not None:
            self.loader_generator.manual_seed(derive_seed(seed, "loader", epoch))
        else:
            self.sampler.set_epoch(epoch)

    def train_epochs(self, callbacks: Callbacks) -> None:
        """Train the remaining epochs: each one seeded, run, checked, recorded and checkpointed."""
        config = self.config
        while self.epoch < config.epochs:
            epoch = self.epoch
            self.seed_epoch(epoch)
            bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                       disable=not show_progress(self.quiet) or not self.dist.is_main,
                       dynamic_ncols=True)
            after_step = (None if callbacks.after_step is None
                          else lambda step, epoch=epoch: callbacks.after_step(epoch, step))
            started = time.perf_counter()
            tally = train_one_epoch(
                self.model, self.criterion, self.loader, self.optimizer, self.scheduler,
                lambda count: batch_masks(config, self.model.num_patches, count, self.mask_generator),
                device=self.device, grad_clip=config.grad_clip, step_model=self.step_model,
                progress=bar, after_step=after_step)
            bar.close()
            self.record_epoch(epoch, tally, time.perf_counter() - started)
            if callbacks.after_epoch is not None:
                callbacks.after_epoch(epoch)

    def record_epoch(self, epoch: int, tally: EpochTally, seconds: float) -> None:
        """Check the epoch's losses, add its row to the history and write the checkpoint."""
        totals, bad_step, bad_loss = tally.read()
        self.check_finite(bad_step, bad_loss, epoch)
        sums = self.dist.all_reduce(totals, self.device)
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
            tqdm.write(f"epoch {row['epoch']}/{self.config.epochs}  loss {row['total']:.4f}  "
                       f"ssim {row['ssim']:.4f}  l1 {row['l1']:.4f}  lpips {row['lpips']:.4f}  "
                       f"{row['images_per_s']:.1f} img/s")

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


def train(config: TrainConfig, *, resume: bool = True, quiet: bool = False,
          callbacks: Callbacks | None = None) -> runs.Run:
    """Train ``config`` (multi-class) and return its trained Run (not yet evaluated).

    A trained run with the same configuration and data is returned as it is, without training; a
    trained run that differs only in scoring settings lends its training (``copy_training``). An
    unfinished one is resumed from its last checkpoint when ``resume`` (the default), else
    restarted from scratch. Both splits of the data are checked before anything is trained.
    """
    config = TrainConfig(**config.to_dict()).validate()
    callbacks = callbacks or Callbacks()
    distributed = Distributed.from_env(config.device)
    try:
        if distributed.active and not distributed.is_main and config.data_root is None:
            distributed.barrier()  # rank 0 generates the synthetic data set first
        if distributed.is_main:
            check_data(config)  # both splits, before any training: one clear error
            if config.data_root is None:
                distributed.barrier()
        ensure_home()  # a MASKAD_HOME that is a file or read-only: one line, before any work
        fingerprint = data_fingerprint(config)  # once: the run id and data.json must agree
        path = runs.run_path(config, fingerprint)
        if runs.Run(path).trained:
            return runs.Run(path)
        twin = runs.find_trained_twin(config, fingerprint) if not distributed.active else None
        if twin is not None:
            return _copy_twin(config, twin, path, quiet)
        run = TrainingRun(config, path, distributed, quiet)  # bad data fails here, before any file
        lock = runs.run_lock(path) if distributed.is_main else contextlib.nullcontext()
        # torchrun gives each process its own thread setting; a single process chooses by measurement
        threads = contextlib.nullcontext() if distributed.active else threads_for("train", device=run.device)
        with lock, deterministic(run.device), threads:
            _run(run, resume, callbacks, fingerprint)
        distributed.barrier()
    finally:
        distributed.close()
    return runs.Run(path)


def _copy_twin(config: TrainConfig, twin: runs.Run, path: Path, quiet: bool) -> runs.Run:
    """A run trained exactly as ``twin`` but scored differently: its training is copied, not repeated."""
    with runs.run_lock(path):
        runs.copy_training(twin.path, path)
        runs.atomic_write_text(path / runs.CONFIG_FILE, config.to_yaml())
    if not quiet:
        print(f"trained as run {twin.id}; its training is re-used")
    return runs.Run(path)


def _run(run: TrainingRun, resume: bool, callbacks: Callbacks, fingerprint: dict) -> None:
    """Resume or restart, train the remaining epochs, then write the training record."""
    path, config = run.path, run.config
    if run.dist.is_main:
        runs.atomic_write_text(path / runs.CONFIG_FILE, config.to_yaml())
        runs.write_data_record(path, fingerprint)
    checkpoint = path / runs.CHECKPOINT_FILE
    run.dist.barrier()  # every rank sees the same checkpoint state
    if checkpoint.is_file() and resume:
        run.restore(runs.load_checkpoint_file(checkpoint, map_location=run.device))
        if not run.quiet and run.dist.is_main:
            print(f"resuming {path} after epoch {run.epoch}/{config.epochs}")
    run.dist.barrier()
    if checkpoint.is_file() and not resume and run.dist.is_main:
        checkpoint.unlink()
    run.train_epochs(callbacks)
    if run.dist.is_main:
        runs.write_training_record(path, run.training_record(), run.data_description(), run.history)


# ------------------------------------------------------------------ no NaN is ever saved
def check_finite_state(state, what: str) -> None:
    """NonFiniteStateError naming the first tensor of ``state`` (a state_dict, or nested dicts
    and lists holding them, such as a checkpoint) with a NaN or infinite value; ``what`` says
    what was to be written ("checkpoint of epoch 3"). Call before saving weights."""
    named = list(_float_tensors(state, ""))
    by_device: dict[torch.device, list[int]] = {}
    for index, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(index)
    bad: list[int] = []
    for indices in by_device.values():  # one synchronisation per device, not per tensor
        finite = torch.stack([torch.isfinite(named[i][1]).all() for i in indices]).tolist()
        bad.extend(i for i, ok in zip(indices, finite, strict=True) if not ok)
    if not bad:
        return
    name, tensor = named[min(bad)]
    count = int((~torch.isfinite(tensor)).sum())
    raise NonFiniteStateError(
        f"{what} not written: {name} holds {count} NaN or infinite value(s) of {tensor.numel()} "
        f"({len(bad)} tensor(s) affected); training diverged: try a lower lr or grad_clip > 0"
    )


def _float_tensors(state, prefix: str):
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            yield prefix or "tensor", state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from _float_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            yield from _float_tensors(value, f"{prefix}[{index}]")
