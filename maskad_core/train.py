"""Training: one masked autoencoder on every given category at once (the paper's multi-class setting).

``train(config)`` is the whole pipeline: it trains (or resumes, or re-uses a finished run), then
evaluates the test split and writes the run folder described in :mod:`maskad_core.runs`.

Exact resumption: every random stream (model init aside) is re-seeded at the start of each epoch from
(seed, epoch, rank): torch's global generator, numpy, python's ``random``, the DataLoader's generator
(shuffling, worker seeds) and the mask generator; each training image's augmentation is seeded from
(seed, epoch, image index), so ``num_workers`` does not change the result either. A checkpoint is written at
each epoch's end, so a run killed at any moment restarts from the last finished epoch and, on CPU,
ends bit-identical to an uninterrupted run.

Distributed: ``torchrun --nproc_per_node=N -m maskad_core.train [maskad train options]`` (or
``maskad train --nproc N``) trains with DistributedDataParallel; ``batch_size`` is the global batch,
split evenly over the processes; rank 0 alone writes files and evaluates.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm  # not tqdm.auto, which calls iter() on a DataLoader twice

from maskad_core import runs
from maskad_core.config import TrainConfig
from maskad_core.data import MVTecAD
from maskad_core.losses import ReconstructionLoss
from maskad_core.masking import make_masks
from maskad_core.model import MaskedAutoencoder

LOSS_COMPONENTS = ("total", "ssim", "l1", "lpips")
CHECKPOINT_FORMAT = 1


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------ building blocks
def select_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto": cuda, then mps, then cpu; otherwise the device named (error if it is unavailable)."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was requested but MPS is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def build_model(config: TrainConfig) -> MaskedAutoencoder:
    return MaskedAutoencoder(
        img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
        depth=config.depth, num_heads=config.num_heads, decoder_embed_dim=config.decoder_embed_dim,
        decoder_depth=config.decoder_depth, decoder_num_heads=config.decoder_num_heads,
        mlp_ratio=config.mlp_ratio,
    )


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts, the same in every process (unlike hash())."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def resolve_data_root(config: TrainConfig) -> tuple[Path, bool]:
    """(root, is_synthetic): the configured root, or the embedded synthetic set (generated if needed)."""
    if config.data_root is not None:
        return Path(config.data_root).expanduser(), False
    from maskad_core.synthetic import default_data_root

    return Path(default_data_root()), True


def open_dataset(config: TrainConfig, split: str, data_root: str | Path | None = None,
                 augment: bool = False) -> tuple[Dataset, MVTecAD]:
    """(dataset to iterate, the underlying MVTecAD) for a split, limited per category if configured."""
    root = Path(data_root) if data_root is not None else resolve_data_root(config)[0]
    limit = (config.max_train_images_per_category if split == "train"
             else config.max_test_images_per_category)
    full = MVTecAD(root, categories=config.categories, split=split, image_size=config.image_size,
                   augment=list(config.augment) if augment else False,
                   cache=split == "train" and limit is None)
    if limit is None:
        return full, full
    return Subset(full, limit_per_category(full, limit)), full


def check_data(config: TrainConfig) -> Path:
    """Resolve (and if needed generate) the data root and scan both splits: DataError if the data
    cannot serve this configuration. Cheap: no image is decoded."""
    root = resolve_data_root(config)[0]
    for split in ("train", "test"):
        MVTecAD(root, categories=config.categories, split=split, image_size=config.image_size)
    return root


def limit_per_category(dataset: MVTecAD, limit: int) -> list[int]:
    """Indices of at most ``limit`` images per category, spread evenly over each category's list
    (so a test subset keeps good and defective images of several defect types)."""
    by_category: dict[str, list[int]] = {}
    for index, sample in enumerate(dataset.samples):
        by_category.setdefault(sample.category, []).append(index)
    chosen: list[int] = []
    for indices in by_category.values():
        if len(indices) <= limit:
            chosen.extend(indices)
        else:
            picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
            chosen.extend(indices[i] for i in sorted(set(picks.tolist())))
    return chosen


def dataset_samples(dataset: Dataset):
    """The data.Sample records of a dataset or a Subset of one, in iteration order."""
    if isinstance(dataset, Subset):
        return [dataset.dataset.samples[i] for i in dataset.indices]
    return list(dataset.samples)


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


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the DataLoader generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def versions() -> dict:
    import platform

    import timm

    import maskad_core

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "maskad": maskad_core.__version__}


# ------------------------------------------------------------------ hooks (tests inject failures here)
def _after_step(epoch: int, step: int) -> None:
    """Called after every optimiser step (epoch and step count from 0)."""


def _after_epoch(epoch: int) -> None:
    """Called after each epoch's checkpoint is written (epoch counts from 0)."""


def _train_epochs(context: _Context) -> None:
    """The training loop proper (a function of its own so that tests can tell it ran)."""
    context.loop()


# ------------------------------------------------------------------ distributed
@dataclass
class _Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, device_request: str) -> _Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = False
        if not dist.is_initialized():
            use_cuda = device_request.startswith("cuda") or (
                device_request == "auto" and torch.cuda.is_available())
            backend = "nccl" if use_cuda else "gloo"
            if use_cuda:
                torch.cuda.set_device(local_rank)  # else every rank's collectives use GPU 0
            dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
            owns = True
        return cls(rank, local_rank, world_size, owns)

    def all_reduce(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Sum over processes (NCCL needs the tensor on the GPU); returns a CPU tensor."""
        if not self.active:
            return tensor
        on_device = tensor.to(device)
        dist.all_reduce(on_device)
        return on_device.cpu()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------ the training run
class _Context:
    """Everything one training run holds: data, model, optimiser, schedule, progress."""

    def __init__(self, config: TrainConfig, path: Path, distributed: _Distributed, quiet: bool):
        self.config, self.path, self.dist, self.quiet = config, path, distributed, quiet
        self.device = select_device(config.device, distributed.local_rank)
        if config.batch_size % distributed.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                             f"{distributed.world_size} processes")
        self.local_batch = config.batch_size // distributed.world_size

        self.data_root, self.synthetic = resolve_data_root(config)
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
            num_workers=config.num_workers, worker_init_fn=_seed_worker,
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
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         else contextlib.nullcontext())
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
        config = self.config
        self.model.train()
        num_patches = self.model.num_patches
        while self.epoch < config.epochs:
            epoch = self.epoch
            self.seed_epoch(epoch)
            sums = torch.zeros(len(LOSS_COMPONENTS) + 1, dtype=torch.float64)
            started = time.perf_counter()
            bar = tqdm(self.loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                       disable=self.quiet or not self.dist.is_main, dynamic_ncols=True)
            for step, batch in enumerate(bar):
                images = batch["image"].to(self.device, non_blocking=True)
                masks = batch_masks(config, num_patches, images.shape[0], self.mask_generator)
                with self.autocast:
                    recon = self.step_model(images, masks.to(self.device))
                loss, parts = self.criterion(recon.float(), images)
                self.check_finite(loss, epoch, step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                count = images.shape[0]
                sums += torch.tensor([parts[k] * count for k in LOSS_COMPONENTS] + [count],
                                     dtype=torch.float64)
                rate = sums[-1].item() * self.dist.world_size / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix({**{k: f"{parts[k]:.4f}" for k in LOSS_COMPONENTS}, "img/s": f"{rate:.1f}"},
                                refresh=False)
                _after_step(epoch, step)
            bar.close()
            sums = self.dist.all_reduce(sums, self.device)
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

    def check_finite(self, loss: torch.Tensor, epoch: int, step: int) -> None:
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0])
        # every rank must stop together, or the others wait forever in the gradient all-reduce
        bad = self.dist.all_reduce(bad, self.device)
        if bad.item() > 0:
            last = (f"the last good checkpoint ({self.path / runs.CHECKPOINT_FILE}, after epoch "
                    f"{self.epoch}) is kept" if self.epoch > 0 else "no epoch had finished yet")
            value = loss.item()
            what = f"loss is {value}" if not math.isfinite(value) else "loss is not finite in another process"
            raise TrainingDivergedError(
                f"{what} at epoch {epoch + 1} step {step + 1} (counting from 1); {last}. "
                f"Try a lower lr or grad_clip > 0.")

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


@contextlib.contextmanager
def _deterministic(device: torch.device):
    """Deterministic kernels where cheap (CPU); the previous setting is restored afterwards."""
    if device.type != "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def train(config: TrainConfig, *, resume: bool = True, quiet: bool = False) -> runs.Run:
    """Train ``config`` (multi-class), evaluate on the test split, and return its finished Run.

    A finished run with the same configuration hash is returned as it is, without training. An
    unfinished one is resumed from its last checkpoint when ``resume`` (the default), else
    restarted from scratch.
    """
    config = TrainConfig(**config.to_dict()).validate()
    path = runs.run_path(config)
    if (path / runs.DONE_FILE).is_file():
        return runs.Run(path)
    distributed = _Distributed.from_env(config.device)
    try:
        if distributed.active and not distributed.is_main and config.data_root is None:
            distributed.barrier()  # rank 0 generates the synthetic data set first
        if distributed.is_main and config.data_root is None:
            resolve_data_root(config)
            distributed.barrier()
        context = _Context(config, path, distributed, quiet)  # bad data fails here, before any file
        lock = runs.run_lock(path) if distributed.is_main else contextlib.nullcontext()
        with lock, _deterministic(context.device):
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
    from maskad_core.evaluate import evaluate_model

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
        from maskad_core.evaluate import format_table, metrics_table

        print(format_table(metrics_table(metrics)))


def main(argv: list[str] | None = None) -> int:
    """``python -m maskad_core.train`` (what torchrun launches): the options of ``maskad train``."""
    import sys

    from maskad_core.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
