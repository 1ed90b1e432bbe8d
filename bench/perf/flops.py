"""FLOP counting and the machine's reference rate (a large matrix multiply).

``torch.utils.flop_counter`` knows the CUDA attention kernels but not the CPU one
(``_scaled_dot_product_flash_attention_for_cpu``), which ``scaled_dot_product_attention`` picks on
CPU; without the mapping added here the attention matmuls would silently count as zero.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                  out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """Run ``fn`` once and return (total FLOPs, FLOPs per aten op) of the matmuls and convolutions."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        fn()
    per_op = {str(op).removeprefix("aten."): int(v) for op, v in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), per_op


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall-clock seconds, process CPU seconds) of one call.

    On a shared machine the wall clock also counts the time the scheduler gave to others; the CPU
    time counts only this process running (with several threads, their sum, spin-waits included).
    On CUDA both are the wall-clock time.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    wall = time.perf_counter() - wall
    if device.type == "cuda":  # the host's CPU time says nothing about the GPU's work
        return wall, wall
    return wall, max(time.process_time() - cpu, 1e-9)


class MatmulProbe:
    """The machine's reference rate: FLOP/s of ``torch.mm`` on two size x size matrices.

    ``sample()`` times one product; the benchmark takes samples between the calls it times, so that
    each measurement is compared with the rate the machine gave at that moment.
    """

    def __init__(self, size: int, device: torch.device, dtype: torch.dtype):
        if size < 1:
            raise ValueError(f"matmul size must be >= 1, got {size}")
        self.size, self.device, self.dtype = size, device, dtype
        gen = torch.Generator().manual_seed(0)
        self.a = torch.rand(size, size, generator=gen).to(device=device, dtype=dtype)
        self.b = torch.rand(size, size, generator=gen).to(device=device, dtype=dtype)
        self.out = torch.empty(size, size, device=device, dtype=dtype)
        self.samples: list[float] = []  # FLOP per wall-clock second
        self.cpu_samples: list[float] = []  # FLOP per second of this process's CPU time
        torch.mm(self.a, self.b, out=self.out)  # warm-up
        synchronize(device)

    def sample(self) -> tuple[float, float]:
        """One product: (FLOP per wall-clock second, FLOP per second of process CPU time)."""
        wall, cpu = timed(lambda: torch.mm(self.a, self.b, out=self.out), self.device)
        flops = 2 * self.size**3
        self.samples.append(flops / wall)
        self.cpu_samples.append(flops / cpu)
        return flops / wall, flops / cpu


def median(values: list[float]) -> float:
    return float(statistics.median(values))
