"""The measurements: training and scoring throughput, memory, batched views against a per-view loop,
FLOPs against the machine's matmul rate, and the projected wall time of the paper's training.

Everything that is compared is measured in the same run (and the batched/looped pair interleaved),
because the machines are shared and their speed drifts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from unittest import mock

import torch

from bench.perf.configs import BenchConfig
from bench.perf.flops import MatmulProbe, count_flops, median, synchronize, timed
from bench.perf.machine import ContentionMeter, PeakMemory, machine_info
from bench.perf.reference import PerViewLoopReference
from maskad_core import losses
from maskad_core.losses import ReconstructionLoss
from maskad_core.masking import complementary_masks, num_views
from maskad_core.model import MaskedAutoencoder, count_parameters

PAPER_TRAIN_IMAGES = 3629  # MVTec AD training images, all 15 categories
PAPER_EPOCHS = 1000
TARGET_BATCHED_OVER_LOOP = 1.5
TARGET_TRAIN_FRACTION = 0.40
TARGET_SCORING_FRACTION = 0.50


def random_alexnet_lpips() -> torch.nn.Module:
    """LPIPS(alex) with a random AlexNet trunk: costs what the real one costs, needs no download."""
    return losses.lpips_random_trunk().requires_grad_(False).eval()


def make_loss(with_lpips: bool) -> tuple[ReconstructionLoss, str]:
    """The training loss with or without LPIPS, and which AlexNet weights the LPIPS term uses."""
    if not with_lpips:
        return ReconstructionLoss(lpips="off"), "off"
    if losses.alexnet_weights_path().is_file():
        return ReconstructionLoss(lpips="required"), "ImageNet AlexNet"
    with mock.patch.object(losses, "build_lpips", random_alexnet_lpips):
        loss = ReconstructionLoss(lpips="required")
    return loss, "random AlexNet (ImageNet weights absent offline; same cost)"


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Workload:
    """One configuration's model, inputs and the callables the benchmark times."""

    def __init__(self, config: BenchConfig, device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.config, self.device = config, device
        self.model = MaskedAutoencoder(**config.model).to(device)
        self.reference = PerViewLoopReference(self.model)
        self.n_views = num_views(config.mask_ratio)
        self.gen = torch.Generator().manual_seed(seed)
        self._images: dict[int, torch.Tensor] = {}
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def images(self, batch: int) -> torch.Tensor:
        """A fixed random batch of ``batch`` images (the content does not change the cost)."""
        if batch not in self._images:
            size = self.model.img_size
            self._images[batch] = torch.rand(batch, 3, size, size, generator=self.gen).to(self.device)
        return self._images[batch]

    def masks(self) -> torch.Tensor:
        return complementary_masks(self.model.num_patches, self.config.mask_ratio, self.gen)

    def train_step(self, batch: int, loss_fn: ReconstructionLoss) -> Callable[[], None]:
        images = self.images(batch)

        def step():
            self.model.train()
            masks = self.masks()
            with _autocast(self.device):
                recon = self.model.reconstruct(images, masks)
                loss, _ = loss_fn(recon.float(), images)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            synchronize(self.device)

        return step

    def scoring(self, batch: int) -> Callable[[], torch.Tensor]:
        """Scoring as the evaluation does it: eq. 3 reconstruction, l2 map, mean score (eq. 1)."""
        from maskad_core.scoring import anomaly_map, image_score

        images = self.images(batch)

        def score():
            self.model.eval()
            with torch.inference_mode(), _autocast(self.device):
                recon = self.model.reconstruct(images, self.masks())
                scores = image_score(anomaly_map(images, recon.float(), kind="l2"), reduction="mean")
            synchronize(self.device)
            return scores

        return score

    def views_forward(self, batch: int, looped: bool, masks: torch.Tensor) -> Callable[[], torch.Tensor]:
        images, net = self.images(batch), (self.reference if looped else self.model)

        def forward():
            self.model.eval()
            with torch.inference_mode(), _autocast(self.device):
                out = net.predict_views(images, masks)
            synchronize(self.device)
            return out

        return forward


CPU = torch.device("cpu")


def time_calls(fn: Callable[[], object], repeats: int,
               device: torch.device = CPU) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds per call for ``repeats`` calls (the caller has warmed ``fn`` up)."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = timed(fn, device)
        walls.append(wall)
        cpus.append(cpu)
    return walls, cpus


def measure(fn: Callable[[], object], repeats: int, device: torch.device,
            probe: MatmulProbe) -> dict:
    """One warm-up call, whose peak memory is recorded, then ``repeats`` timed calls, each followed
    by a matmul sample: median seconds (wall and CPU), the median matmul rates around them, peak MiB."""
    with PeakMemory(device) as memory:
        fn()
    walls, cpus, rates, cpu_rates = [], [], [], []
    for _ in range(repeats):
        wall, cpu = timed(fn, device)
        rate, cpu_rate = probe.sample()
        walls.append(wall)
        cpus.append(cpu)
        rates.append(rate)
        cpu_rates.append(cpu_rate)
    return {"seconds": median(walls), "cpu_seconds": median(cpus), "matmul_flops": median(rates),
            "matmul_flops_cpu": median(cpu_rates), "peak_mib": memory.mib,
            "memory_method": memory.method}


def compare_views(work: Workload, batch: int, repeats: int) -> dict:
    """Batched views against the per-view loop: same weights and masks, outputs compared, timed
    alternately so that drift in the machine's speed hits both."""
    masks = work.masks()
    batched, looped = work.views_forward(batch, False, masks), work.views_forward(batch, True, masks)
    out_batched, out_looped = batched(), looped()  # also the warm-up
    max_diff = float((out_batched.float() - out_looped.float()).abs().max())
    tolerance = 1e-4 if out_batched.dtype == torch.float32 else 5e-2
    times = {"batched": ([], []), "loop": ([], [])}
    for _ in range(repeats):
        for name, fn in (("batched", batched), ("loop", looped)):
            wall, cpu = timed(fn, work.device)
            times[name][0].append(wall)
            times[name][1].append(cpu)
    (bw, bc), (lw, lc) = ([median(v) for v in times[k]] for k in ("batched", "loop"))
    return {"batch": batch, "batched_ms": 1e3 * bw, "loop_ms": 1e3 * lw, "ratio": lw / bw,
            "batched_cpu_ms": 1e3 * bc, "loop_cpu_ms": 1e3 * lc, "ratio_cpu": lc / bc,
            "max_abs_diff": max_diff, "outputs_equal": max_diff <= tolerance, "tolerance": tolerance}


def measure_config(config: BenchConfig, device: torch.device, probe: MatmulProbe, lpips: bool,
                   log: Callable[[str], None] = print) -> dict:
    """Every measurement of one configuration (raw: seconds, FLOPs, matmul rates around them)."""
    work = Workload(config, device)
    result = {"name": config.name, "description": config.describe(), "note": config.note,
              "paper": config.paper, "model": dict(config.model), "n_views": work.n_views,
              "parameters": count_parameters(work.model), "train_batch": config.train_batch,
              "infer_batch": config.infer_batch, "repeats": config.repeats}
    reps, phases = config.repeats, {}

    log(f"[{config.name}] scoring: FLOPs, batch {config.infer_batch}, batch 1")
    flops = {}
    flops["infer"], result["flops_by_op_infer"] = count_flops(work.scoring(1))
    phases["infer"] = measure(work.scoring(config.infer_batch), reps, device, probe)
    phases["infer_batch1"] = measure(work.scoring(1), reps, device, probe)

    log(f"[{config.name}] batched views vs per-view loop")
    result["views_vs_loop"] = [compare_views(work, b, reps) for b in sorted({1, config.infer_batch})]

    log(f"[{config.name}] training step without LPIPS, batch {config.train_batch}")
    loss_plain, _ = make_loss(False)
    flops["train"], result["flops_by_op_train"] = count_flops(work.train_step(1, loss_plain))
    phases["train"] = measure(work.train_step(config.train_batch, loss_plain), reps, device, probe)

    if lpips:
        log(f"[{config.name}] training step with LPIPS, batch {config.train_batch}")
        loss_lpips, result["lpips_weights"] = make_loss(True)
        loss_lpips.to(device)
        flops["train_lpips"] = count_flops(work.train_step(1, loss_lpips))[0]
        phases["train_lpips"] = measure(work.train_step(config.train_batch, loss_lpips), reps, device,
                                        probe)
    result["flops_per_image"] = flops
    result["phases"] = phases
    result["memory_method"] = phases["infer"]["memory_method"]
    return result


def add_derived(result: dict) -> dict:
    """Throughputs, fractions of the matmul rate measured around each phase, the batch-1 lower bound
    and the paper-schedule projection."""
    flops, phases = result["flops_per_image"], result["phases"]
    batches = {"infer": result["infer_batch"], "infer_batch1": 1, "train": result["train_batch"],
               "train_lpips": result["train_batch"]}
    flops_of = {"infer": flops["infer"], "infer_batch1": flops["infer"], "train": flops["train"],
                "train_lpips": flops.get("train_lpips")}
    for name, phase in phases.items():
        rate = batches[name] / phase["seconds"]
        phase["images_per_s"] = rate
        phase["fraction_of_matmul"] = flops_of[name] * rate / phase["matmul_flops"]
        phase["fraction_of_matmul_cpu"] = (
            flops_of[name] * batches[name] / phase["cpu_seconds"] / phase["matmul_flops_cpu"])
    result["infer_images_per_s"] = phases["infer"]["images_per_s"]
    result["infer_ms_batch1"] = 1e3 * phases["infer_batch1"]["seconds"]
    result["infer_ms_lower_bound"] = 1e3 * flops["infer"] / phases["infer_batch1"]["matmul_flops"]
    for name in ("infer", "infer_batch1"):
        result[f"{name}_fraction_of_peak"] = phases[name]["fraction_of_matmul"]
        result[f"{name}_fraction_of_peak_cpu"] = phases[name]["fraction_of_matmul_cpu"]
    result["infer_peak_mib"] = phases["infer"]["peak_mib"]
    images = PAPER_TRAIN_IMAGES * PAPER_EPOCHS
    for name in ("train", "train_lpips"):
        if name in phases:
            result[f"{name}_images_per_s"] = phases[name]["images_per_s"]
            result[f"{name}_fraction_of_peak"] = phases[name]["fraction_of_matmul"]
            result[f"{name}_fraction_of_peak_cpu"] = phases[name]["fraction_of_matmul_cpu"]
            result[f"{name}_peak_mib"] = phases[name]["peak_mib"]
            suffix = "" if name == "train" else "_lpips"
            result[f"paper_schedule_hours{suffix}"] = images / phases[name]["images_per_s"] / 3600
    return result


def thread_sweep(config: BenchConfig, device: torch.device, matmul_size: int, repeats: int,
                 log: Callable[[str], None] = print) -> list[dict]:
    """Matmul rate and batch-1 scoring latency of ``config`` at 1..cores torch threads, the thread
    counts taken in turn within each repeat. On a machine shared with other busy processes, threads
    that wait for a descheduled sibling at every parallel region can cost more than they bring."""
    if device.type != "cpu":
        return []
    cores = machine_info(device)["cores"]
    before = torch.get_num_threads()
    work = Workload(config, device)
    score = work.scoring(1)
    log(f"[{config.name}] thread sweep 1..{cores}")
    samples: dict[int, dict[str, list[float]]] = {t: {"matmul": [], "score": []} for t in range(1, cores + 1)}
    try:
        for threads in samples:
            torch.set_num_threads(threads)
            score()  # warm-up per thread count
        for _ in range(repeats):
            for threads, rows in samples.items():
                torch.set_num_threads(threads)
                probe = MatmulProbe(matmul_size, device, torch.float32)
                rows["matmul"].append(probe.sample()[0])
                rows["score"] += time_calls(score, 1)[0]
    finally:
        torch.set_num_threads(before)
    return [{"threads": t, "matmul_gflops": median(r["matmul"]) / 1e9,
             "score_ms_batch1": 1e3 * median(r["score"]), "config": config.name}
            for t, r in samples.items()]


def profile_config(config: BenchConfig, device: torch.device, rows: int = 12) -> str:
    """torch.profiler tables (top ops by self time) of one batched scoring call and one training
    step (no LPIPS) of ``config``, each after a warm-up call."""
    from torch.profiler import ProfilerActivity, profile

    work = Workload(config, device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    sections = []
    for title, fn in ((f"scoring, batch {config.infer_batch}", work.scoring(config.infer_batch)),
                      (f"training step without LPIPS, batch {config.train_batch}",
                       work.train_step(config.train_batch, make_loss(False)[0]))):
        fn()
        with profile(activities=activities) as prof:
            fn()
        table = prof.key_averages().table(sort_by=sort, row_limit=rows)
        sections.append(f"== {config.name} ({config.describe()}): {title}\n{table}")
    return "\n".join(sections)


def evaluate_targets(configs: list[dict], device: torch.device) -> list[dict]:
    """The issue's targets, judged on the paper configuration(s); the views ratio on every config."""
    targets = []
    for c in configs:
        if c["n_views"] == 4 and device.type == "cpu":
            for row in c["views_vs_loop"]:
                targets.append({
                    "target": f"batched views >= {TARGET_BATCHED_OVER_LOOP}x per-view loop "
                              f"(n=4, inference, batch {row['batch']})",
                    "config": c["name"], "value": row["ratio"], "value_cpu": row["ratio_cpu"],
                    "met": row["ratio"] >= TARGET_BATCHED_OVER_LOOP,
                    "met_cpu": row["ratio_cpu"] >= TARGET_BATCHED_OVER_LOOP})
        if not c["paper"]:
            continue
        targets.append({"target": f"training step >= {TARGET_TRAIN_FRACTION:.0%} of matmul rate",
                        "config": c["name"], "value": c["train_fraction_of_peak"],
                        "value_cpu": c["train_fraction_of_peak_cpu"],
                        "met": c["train_fraction_of_peak"] >= TARGET_TRAIN_FRACTION,
                        "met_cpu": c["train_fraction_of_peak_cpu"] >= TARGET_TRAIN_FRACTION})
        targets.append({"target": f"scoring (batched) >= {TARGET_SCORING_FRACTION:.0%} of matmul rate",
                        "config": c["name"], "value": c["infer_fraction_of_peak"],
                        "value_cpu": c["infer_fraction_of_peak_cpu"],
                        "met": c["infer_fraction_of_peak"] >= TARGET_SCORING_FRACTION,
                        "met_cpu": c["infer_fraction_of_peak_cpu"] >= TARGET_SCORING_FRACTION})
    return targets


def run_benchmark(configs: list[BenchConfig], device: str | torch.device = "cpu",
                  matmul_size: int = 2048, matmul_repeats: int = 5, lpips: bool = True,
                  sweep_threads: bool = True, log: Callable[[str], None] = print) -> dict:
    """Measure every configuration; the matmul rate is sampled before and between the timed calls."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    info = machine_info(device)
    meter = ContentionMeter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    log(f"matmul {matmul_size}x{matmul_size} {str(dtype).removeprefix('torch.')} on {device}")
    probe = MatmulProbe(matmul_size, device, dtype)
    for _ in range(matmul_repeats):
        probe.sample()
    results = [add_derived(measure_config(c, device, probe, lpips, log)) for c in configs]
    sweep = thread_sweep(configs[0], device, matmul_size, configs[0].repeats, log) if sweep_threads else []
    return {
        "machine": info,
        "contention": meter.report(info["cores"]),
        "matmul": {"size": matmul_size, "dtype": str(dtype).removeprefix("torch."),
                   "gflops": median(probe.samples) / 1e9,
                   "gflops_min": min(probe.samples) / 1e9, "gflops_max": max(probe.samples) / 1e9,
                   "gflops_per_cpu_second": median(probe.cpu_samples) / 1e9,
                   "samples": len(probe.samples)},
        "autocast": "bf16" if device.type == "cuda" else "none (fp32)",
        "configs": results,
        "thread_sweep": sweep,
        "targets": evaluate_targets(results, device),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
