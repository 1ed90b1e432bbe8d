"""The device's measured rates and the rule that turns them into a number of epochs."""

from __future__ import annotations

import math
import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dry_run: bool = False) -> dict:
    """FLOP/s of a large square matmul: bf16 8192^2 on CUDA (the tensor cores' rate the step can
    hope for), fp32 on the CPU (512^2 in a dry run)."""
    if device.type == "cuda":
        n, dtype, repeats = 8192, torch.bfloat16, 20
    else:
        n, dtype, repeats = (256 if dry_run else 2048), torch.float32, 3
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    seconds = (time.perf_counter() - started) / repeats
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "seconds_per_mm": seconds,
            "flops_per_s": 2 * n ** 3 / seconds}


def training_flops_per_image(step, batch: int) -> float | None:
    """FLOPs of one training step per image (forward and backward, torch's flop counter: matmuls,
    convolutions and attention), or None where the counter fails."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            step()
        return counter.get_total_flops() / batch
    except Exception:  # the counter is a diagnostic: never the reason a run fails
        return None


def choose_epochs(train_seconds: float, seconds_per_epoch: float, cap: int,
                  safety: float = 0.9) -> tuple[int, str]:
    """(epochs, why): the most epochs that fit ``safety`` of ``train_seconds`` at the measured
    ``seconds_per_epoch`` (of every arm together), at most ``cap``, at least 1."""
    if not (seconds_per_epoch > 0 and math.isfinite(seconds_per_epoch)):
        raise ValueError(f"seconds_per_epoch must be a finite number > 0, got {seconds_per_epoch!r}")
    affordable = int(max(train_seconds, 0.0) * safety / seconds_per_epoch)
    if affordable >= cap:
        return cap, (f"the full {cap} epochs fit: {cap} x {seconds_per_epoch:.3f} s = "
                     f"{cap * seconds_per_epoch:.0f} s of the {train_seconds:.0f} s left for training")
    epochs = max(1, affordable)
    return epochs, (f"fewer than {cap} epochs: {train_seconds:.0f} s left for training x {safety:g} "
                    f"/ {seconds_per_epoch:.3f} s per epoch = {epochs}"
                    + (" (at least 1 is run)" if affordable < 1 else ""))
