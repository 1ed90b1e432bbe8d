"""Where and how a computation runs: the device, mixed precision, seeds, determinism, versions.

Training and evaluation share these, so a model is scored on the device and at the precision it was
trained with, and every random stream is seeded from the same parts in every process.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import random
import re
import sys
from pathlib import Path

import numpy as np
import torch

from maskad_core.training.config import DEVICES


def show_progress(quiet: bool = False) -> bool:
    """Whether to draw progress bars: not when asked to be quiet, nor when stderr is redirected
    (a bar's carriage returns would fill a log file)."""
    return not quiet and sys.stderr.isatty()


def select_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto": cuda, then mps, then cpu; otherwise the device named. ValueError naming the setting
    and the allowed values for an unknown device, and saying so for one this machine lacks."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    allowed = f"device must be one of {', '.join(DEVICES)} or cuda:N"
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {requested!r} is not a known device: {allowed}") from None
    if device.type not in DEVICES:
        raise ValueError(f"device {requested!r} is not a known device: {allowed}")
    fix = "use device=cpu or device=auto"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was requested but CUDA is not available: no such "
                             f"device is available here; {fix}")
        count = torch.cuda.device_count()
        if device.index is not None and count and device.index >= count:
            raise ValueError(f"device {requested!r} was requested but this machine has {count} CUDA "
                             f"device(s), cuda:0 to cuda:{count - 1}: no such device is available "
                             f"here; {fix}")
        return device if device.index is not None else torch.device("cuda", local_rank)
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"device {requested!r} was requested but MPS is not available: no such "
                         f"device is available here; {fix}")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA (the paper's GPUs' fast path), nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic(device: torch.device):
    """Deterministic kernels where cheap (CPU); the previous setting is restored afterwards."""
    if device.type != "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN (a debugging aid, ~5% of a CPU
    # training step); no result reads memory it did not write, so it is left off.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
        torch.utils.deterministic.fill_uninitialized_memory = previous_fill


def derive_seed(*parts) -> int:
    """A 63-bit seed from any parts, the same in every process (unlike hash())."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the DataLoader generator; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def versions() -> dict:
    """The versions a run's record names, so a result can be traced to its software."""
    import timm

    import maskad_core

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "maskad": maskad_core.__version__}


def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo, else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
