"""One training arm of the GPU run: the recipe's step with the data on the device.

The step is the study's (``maskad_core.training.epoch.train_one_epoch``): the composite of eq. 3
under the batch's masks in bf16 autocast on CUDA, the loss in float32, AdamW with no decay on 1-D
parameters, linear warm-up then cosine decay per step. What differs is where the work is done: the
images stay on the device as uint8, each batch is augmented there (``augment.augment_batch``), the
masks are drawn there, the optimiser is fused on CUDA, and the losses are read once per epoch.
"""

from __future__ import annotations

import math
import time

import torch

from bench.gpu.augment import augment_batch, complementary_masks_batch, random_masks_batch
from bench.gpu.settings import IMAGENET, RECIPE
from maskad_core.masking import views_per_image
from maskad_core.model import MaskedAutoencoder


def lr_factor(step: int, total_steps: int, warmup_steps: float) -> float:
    """maskad_core.training.train.lr_factor (whose module needs PyYAML): linear warm-up to 1
    over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1.0)
    progress = min((step - warmup_steps) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_model(shape: dict) -> MaskedAutoencoder:
    return MaskedAutoencoder(
        img_size=shape["image_size"], patch_size=shape["patch_size"], embed_dim=shape["embed_dim"],
        depth=shape["depth"], num_heads=shape["num_heads"],
        decoder_embed_dim=shape["decoder_embed_dim"], decoder_depth=shape["decoder_depth"],
        decoder_num_heads=shape["decoder_num_heads"], mlp_ratio=RECIPE["mlp_ratio"],
        pixel_mean=IMAGENET[0], pixel_std=IMAGENET[1])


def make_optimizer(model: torch.nn.Module, lr: float, device: torch.device):
    """AdamW as the study's (no decay on biases, norms, the mask token); fused on CUDA.
    Returns (optimizer, how it runs)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": RECIPE["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    betas = (RECIPE["adam_beta1"], RECIPE["adam_beta2"])
    if device.type == "cuda":
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True), "fused"
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True), "foreach"


class Arm:
    """One model trained on ``images`` (N, 3, S, S) uint8 on ``device`` with ``masking``."""

    def __init__(self, shape: dict, images: torch.Tensor, device: torch.device, criterion,
                 masking: str, lr: float, batch_size: int, seed: int):
        self.shape, self.images, self.device, self.criterion = shape, images, device, criterion
        self.masking, self.lr, self.batch_size, self.seed = masking, lr, batch_size, seed
        self.views = views_per_image(masking, shape["mask_ratio"])
        torch.manual_seed(seed)
        self.model = build_model(shape).to(device)
        self.initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.originals = None  # the eager blocks while compiled ones stand in
        self.steps_per_epoch = math.ceil(images.shape[0] / batch_size)
        self.reset(epochs=1, warmup_epochs=0.5)

    # -- schedule, state
    def reset(self, epochs: int, warmup_epochs: float) -> None:
        """The initial weights, a fresh optimiser and schedule for ``epochs``, and the seeded
        streams: whatever the probes did is undone."""
        with torch.no_grad():  # by tensor: compiled blocks rename the state dict's keys
            for name, tensor in self.model.state_dict(keep_vars=True).items():
                tensor.copy_(self.initial[name.replace("._orig_mod", "")])
        self.optimizer, self.optimizer_kind = make_optimizer(self.model, self.lr, self.device)
        total = self.steps_per_epoch * epochs
        warmup = min(float(warmup_epochs), epochs / 2) * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, total, warmup))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.order_generator = torch.Generator()
        self.order_generator.manual_seed(self.seed + 1)
        self.epoch = 0

    def masks(self, count: int) -> torch.Tensor:
        num_patches = self.model.num_patches
        if self.masking == "complementary":
            return complementary_masks_batch(count, num_patches, self.views, self.generator, self.device)
        return random_masks_batch(count, num_patches, self.shape["mask_ratio"], self.generator,
                                  self.device)

    # -- the step
    def step(self, index: torch.Tensor, sums: torch.Tensor | None = None) -> None:
        images = self.images[index].float().div_(255.0)
        images = augment_batch(images, self.generator, RECIPE["crop_scale"],
                               RECIPE["rotate_degrees"], RECIPE["flip_probability"])
        masks = self.masks(images.shape[0])
        with _autocast(self.device):
            recon = self.model(images, masks)
        loss, parts = self.criterion(recon.float(), images)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if sums is not None:
            sums += torch.stack([parts["total"], parts["ssim"], parts["l1"], parts["lpips"]]).to(
                sums.dtype) * images.shape[0]

    def random_batch(self, count: int) -> torch.Tensor:
        return torch.randint(0, self.images.shape[0], (count,), generator=self.order_generator).to(
            self.device)

    def time_steps(self, count: int, batch: int | None = None) -> float:
        """Seconds per step over ``count`` steps of random batches (the device drained first)."""
        from bench.gpu.probe import sync

        batch = batch or self.batch_size
        index = [self.random_batch(batch) for _ in range(count)]
        sync(self.device)
        started = time.perf_counter()
        for chosen in index:
            self.step(chosen)
        sync(self.device)
        return (time.perf_counter() - started) / max(count, 1)

    def train_epoch(self) -> dict:
        """One pass over the images in a fresh random order; returns the epoch's mean losses and
        its seconds (one read of the device)."""
        started = time.perf_counter()
        order = torch.randperm(self.images.shape[0], generator=self.order_generator).to(self.device)
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        for start in range(0, order.numel(), self.batch_size):
            self.step(order[start:start + self.batch_size], sums)
        means = (sums / order.numel()).tolist()  # the epoch's one wait for the device
        self.epoch += 1
        return {"epoch": self.epoch, "total": means[0], "ssim": means[1], "l1": means[2],
                "lpips": means[3], "seconds": time.perf_counter() - started,
                "lr_end": self.scheduler.get_last_lr()[0]}

    # -- torch.compile, where it pays
    def compile(self) -> None:
        """Compile every transformer block and the loss (the model's own forward keeps its
        host-side checks, which would break a whole-model graph)."""
        self.originals = (list(self.model.blocks), list(self.model.decoder_blocks), self.criterion)
        for blocks in (self.model.blocks, self.model.decoder_blocks):
            for i, block in enumerate(blocks):
                blocks[i] = torch.compile(block)
        self.criterion = torch.compile(self.criterion)

    def uncompile(self) -> None:
        if self.originals is None:
            return
        encoder, decoder, criterion = self.originals
        for blocks, eager in ((self.model.blocks, encoder), (self.model.decoder_blocks, decoder)):
            for i, block in enumerate(eager):
                blocks[i] = block
        self.criterion, self.originals = criterion, None

    def eager_state_dict(self) -> dict:
        """The weights under the eager module names (compiled blocks add `_orig_mod.`)."""
        return {k.replace("._orig_mod", ""): v for k, v in self.model.state_dict().items()}


def _autocast(device: torch.device):
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
