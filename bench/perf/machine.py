"""What the benchmark ran on, how busy the machine was, and how much memory a call took."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import resource
import time
from pathlib import Path

import torch

from maskad_core.training.runtime import cpu_name

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_PROC_STAT = Path("/proc/stat")


def machine_info(device: torch.device) -> dict:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu": cpu_name(),
        "cores": cores,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu_used": device.type == "cuda",  # said plainly: CPU numbers are no GPU's numbers
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_busy_seconds() -> float | None:
    """Busy CPU time of the whole machine (all cores), from /proc/stat; None where unavailable."""
    try:
        fields = _PROC_STAT.read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ContentionMeter:
    """How much CPU other processes used while the benchmark ran: their busy core-seconds over the
    available core-seconds. A share near 0 means the machine was the benchmark's own."""

    def __init__(self):
        self.start_wall = time.perf_counter()
        self.start_busy = _cpu_busy_seconds()
        self.start_own = _own_cpu_seconds()
        self.load_start = os.getloadavg()[0]

    def report(self, cores: int) -> dict:
        wall = time.perf_counter() - self.start_wall
        busy = _cpu_busy_seconds()
        result = {"wall_s": round(wall, 1), "load_avg_1min_start": round(self.load_start, 2),
                  "load_avg_1min_end": round(os.getloadavg()[0], 2)}
        if busy is not None and self.start_busy is not None and wall > 0:
            others = max(0.0, (busy - self.start_busy) - (_own_cpu_seconds() - self.start_own))
            result["other_processes_cpu_share"] = round(others / (wall * cores), 3)
        return result


def _rss_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _PROC_STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def release_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc), so that the next RSS delta starts clean."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory a block of code adds above what the process held before it, in MiB.

    CPU: Linux's VmHWM (peak resident set) is reset through /proc/self/clear_refs, so the peak of
    this block alone is ``VmHWM - VmRSS before``; where that is not possible, the growth of
    ``resource.getrusage().ru_maxrss`` (only sees new process-wide peaks: a lower bound).
    CUDA: ``torch.cuda.max_memory_allocated`` above the allocation before.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.mib: float | None = None
        self.method = ""

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        release_free_memory()
        self._before = _rss_kib("VmRSS")
        try:
            _CLEAR_REFS.write_text("5")  # "5" resets the peak RSS counter (Linux >= 4.0)
            self.method = "VmHWM reset via /proc/self/clear_refs"
        except OSError:
            self._before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss growth (lower bound)"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._before
            self.mib = peak / 2**20
        elif self.method.startswith("VmHWM"):
            self.mib = max(0, (_rss_kib("VmHWM") or 0) - (self._before or 0)) / 1024
        else:
            self.mib = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._before) / 1024
        return False
