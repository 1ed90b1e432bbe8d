"""torch's thread count, chosen per task by measurement (``maskad --threads``, ``MASKAD_THREADS``).

On a machine with few cores shared with other work, a second torch thread often waits on a busy
core: scoring one image with two threads took up to 50x longer than with one, and training gained
nothing under load (bench/results/threads.md, bench/results/training.md). torch is imported inside
the functions, so that the command line's ``--help`` does not load it.
"""

from __future__ import annotations

import contextlib
import os
import time

THREADS_ENV = "MASKAD_THREADS"
THREAD_TASKS = ("score-one", "score-batch", "train")
# More threads must make the probe at least this much faster to be chosen: a second thread that
# waits on a busy core costs far more than it gains (bench/results/threads.md).
THREADS_MIN_GAIN = 1.3
_probed: dict[int, int] = {}  # cores -> the threads the probe chose, once per process

THREADS_HELP = (
    f"torch threads: N, or the {THREADS_ENV} environment variable; otherwise chosen by measurement "
    "(bench/results/threads.md): one image is scored with 1 thread (a second thread made it up to 50x "
    "slower on 2 shared cores); training and batched scoring take 1 thread where the load average "
    "says other work holds a core, else time a short probe with 1 thread and with one per core and "
    f"take more threads only where they are {THREADS_MIN_GAIN}x faster")


def requested_threads() -> int | None:
    """The thread count set by ``MASKAD_THREADS`` (None where unset); ValueError naming the
    variable for a value that is not a whole number >= 1."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV}={text!r} is not a whole number >= 1 (torch threads)")
    return value


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _probe_seconds(threads: int, x, w1, w2) -> float:
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    for _ in range(2):  # a transformer MLP on 1024 tokens of width 128, as in the real profile
        torch.nn.functional.gelu(x @ w1) @ w2
    return time.perf_counter() - started


def probe_threads(cores: int | None = None) -> int:
    """1 or ``cores`` threads, whichever runs a small model-like workload faster now (1 unless
    the many-thread run is THREADS_MIN_GAIN times faster); tens of ms, once per process."""
    import torch

    cores = cores or _cores()
    if cores <= 1:
        return 1
    if cores in _probed:
        return _probed[cores]
    if _busy_cores() > 0.5:  # other work holds a core already: a second thread would wait on it
        _probed[cores] = 1
        return 1
    previous = torch.get_num_threads()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1024, 128, generator=generator)
    w1, w2 = torch.rand(128, 512, generator=generator), torch.rand(512, 128, generator=generator)
    times: dict[int, list[float]] = {1: [], cores: []}
    try:
        with torch.inference_mode():
            _probe_seconds(1, x, w1, w2)
            for _ in range(3):  # interleaved, so a burst of other work hits both
                for threads in times:
                    times[threads].append(_probe_seconds(threads, x, w1, w2))
                if times[cores][-1] >= times[1][-1]:  # slower than one thread: a busy machine
                    break
    finally:
        torch.set_num_threads(previous)
    one, many = median(times[1]), median(times[cores])
    _probed[cores] = cores if one >= THREADS_MIN_GAIN * many else 1
    return _probed[cores]


def _busy_cores() -> float:
    """Cores' worth of work beyond one, by the 1-minute load average (0 where unknown)."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:
        return 0.0


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def choose_threads(task: str, requested: int | None = None) -> int:
    """torch's thread count for ``task`` (THREAD_TASKS): ``requested``, else ``MASKAD_THREADS``,
    else the measured rule (THREADS_HELP)."""
    if task not in THREAD_TASKS:
        raise ValueError(f"thread task {task!r} is not one of: {', '.join(THREAD_TASKS)}")
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {requested!r}")
        return int(requested)
    from_env = requested_threads()
    if from_env is not None:
        return from_env
    return 1 if task == "score-one" else probe_threads()


@contextlib.contextmanager
def threads_for(task: str, requested: int | None = None, device=None):
    """torch's thread count set by :func:`choose_threads` for the block, restored afterwards
    (the library leaves its caller's setting as it found it); a GPU's work is left alone."""
    import torch

    if device is not None and torch.device(device).type != "cpu":
        yield torch.get_num_threads()
        return
    previous = torch.get_num_threads()
    threads = choose_threads(task, requested)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def add_argument(parser) -> None:
    """The command line's ``--threads N`` (see :func:`apply_argument`)."""
    parser.add_argument("--threads", type=int, default=None, metavar="N", help=THREADS_HELP)


def apply_argument(args) -> None:
    """``--threads N`` holds for every library call of this process, as ``MASKAD_THREADS`` does;
    ValueError naming the option for N < 1."""
    threads = getattr(args, "threads", None)
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be a whole number >= 1, got {threads}")
    os.environ[THREADS_ENV] = str(threads)
