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

from bench.configs import BenchConfig
from bench.flops import count_flops, matmul_rate, median, synchronize
from bench.machine import ContentionMeter, PeakMemory, machine_info
from bench.reference import PerViewLoopReference
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
    import contextlib as _cl
    import io
    import warnings

    import lpips

    with warnings.catch_warnings(), _cl.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)
        metric = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    return metric.requires_grad_(False).eval()


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
                views = self.model.predict_views(images, masks)
                recon = self.model.combine_views(images, views, masks)
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


def time_calls(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds per call for ``repeats`` calls (the caller has warmed ``fn`` up)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def warm_and_measure(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[list[float], PeakMemory]:
    """One warm-up call, whose peak memory is recorded, then ``repeats`` timed calls."""
    with PeakMemory(device) as memory:
        fn()
    return time_calls(fn, repeats), memory


def compare_views(work: Workload, batch: int, repeats: int) -> dict:
    """Batched views against the per-view loop: same weights and masks, outputs compared, timed
    alternately so that drift in the machine's speed hits both."""
    masks = work.masks()
    batched, looped = work.views_forward(batch, False, masks), work.views_forward(batch, True, masks)
    out_batched, out_looped = batched(), looped()  # also the warm-up
    max_diff = float((out_batched.float() - out_looped.float()).abs().max())
    tolerance = 1e-4 if out_batched.dtype == torch.float32 else 5e-2
    times_b, times_l = [], []
    for _ in range(repeats):
        times_b += time_calls(batched, 1)
        times_l += time_calls(looped, 1)
    batched_s, looped_s = median(times_b), median(times_l)
    return {"batch": batch, "batched_ms": 1e3 * batched_s, "loop_ms": 1e3 * looped_s,
            "ratio": looped_s / batched_s, "max_abs_diff": max_diff,
            "outputs_equal": max_diff <= tolerance, "tolerance": tolerance}


def per_image_flops(fn: Callable[[], object], batch: int) -> tuple[float, dict[str, int]]:
    total, by_op = count_flops(fn)
    return total / batch, by_op


def measure_config(config: BenchConfig, device: torch.device, lpips: bool,
                   log: Callable[[str], None] = print) -> dict:
    work = Workload(config, device)
    result = {"name": config.name, "description": config.describe(), "note": config.note,
              "paper": config.paper, "model": dict(config.model), "n_views": work.n_views,
              "parameters": count_parameters(work.model), "train_batch": config.train_batch,
              "infer_batch": config.infer_batch, "repeats": config.repeats}
    reps = config.repeats

    log(f"[{config.name}] scoring: FLOPs, batch 1, batch {config.infer_batch}")
    flops_infer, by_op = per_image_flops(work.scoring(1), 1)
    times, memory = warm_and_measure(work.scoring(config.infer_batch), reps, device)
    result["infer_images_per_s"] = config.infer_batch / median(times)
    result["infer_peak_mib"] = memory.mib
    result["memory_method"] = memory.method
    result["infer_ms_batch1"] = 1e3 * median(warm_and_measure(work.scoring(1), reps, device)[0])

    log(f"[{config.name}] batched views vs per-view loop")
    result["views_vs_loop"] = [compare_views(work, b, reps) for b in sorted({1, config.infer_batch})]

    log(f"[{config.name}] training step without LPIPS, batch {config.train_batch}")
    loss_plain, _ = make_loss(False)
    flops_train, by_op_train = per_image_flops(work.train_step(1, loss_plain), 1)
    times, memory = warm_and_measure(work.train_step(config.train_batch, loss_plain), reps, device)
    result["train_images_per_s"] = config.train_batch / median(times)
    result["train_peak_mib"] = memory.mib

    if lpips:
        log(f"[{config.name}] training step with LPIPS, batch {config.train_batch}")
        loss_lpips, weights = make_loss(True)
        loss_lpips.to(device)
        flops_lpips, _ = per_image_flops(work.train_step(1, loss_lpips), 1)
        times, memory = warm_and_measure(work.train_step(config.train_batch, loss_lpips), reps, device)
        result.update(train_lpips_images_per_s=config.train_batch / median(times),
                      train_lpips_peak_mib=memory.mib, lpips_weights=weights)
    else:
        flops_lpips = None

    result["flops_per_image"] = {"infer": flops_infer, "train": flops_train, "train_lpips": flops_lpips}
    result["flops_by_op_infer"] = by_op
    result["flops_by_op_train"] = by_op_train
    return result


def add_derived(result: dict, matmul_flops: float) -> dict:
    """Fractions of the matmul rate, the batch-1 lower bound and the paper-schedule projection."""
    flops = result["flops_per_image"]
    result["infer_fraction_of_peak"] = flops["infer"] * result["infer_images_per_s"] / matmul_flops
    result["infer_batch1_fraction_of_peak"] = flops["infer"] / (result["infer_ms_batch1"] / 1e3) / matmul_flops
    result["infer_ms_lower_bound"] = 1e3 * flops["infer"] / matmul_flops
    result["train_fraction_of_peak"] = flops["train"] * result["train_images_per_s"] / matmul_flops
    images = PAPER_TRAIN_IMAGES * PAPER_EPOCHS
    result["paper_schedule_hours"] = images / result["train_images_per_s"] / 3600
    if flops.get("train_lpips") is not None:
        result["train_lpips_fraction_of_peak"] = (
            flops["train_lpips"] * result["train_lpips_images_per_s"] / matmul_flops)
        result["paper_schedule_hours_lpips"] = images / result["train_lpips_images_per_s"] / 3600
    return result


def evaluate_targets(configs: list[dict], device: torch.device) -> list[dict]:
    """The issue's targets, judged on the paper configuration(s); the views ratio on every config."""
    targets = []
    for c in configs:
        if c["n_views"] == 4 and device.type == "cpu":
            for row in c["views_vs_loop"]:
                targets.append({
                    "target": f"batched views >= {TARGET_BATCHED_OVER_LOOP}x per-view loop "
                              f"(n=4, inference, batch {row['batch']})",
                    "config": c["name"], "value": row["ratio"],
                    "met": row["ratio"] >= TARGET_BATCHED_OVER_LOOP})
        if not c["paper"]:
            continue
        targets.append({"target": f"training step >= {TARGET_TRAIN_FRACTION:.0%} of matmul rate",
                        "config": c["name"], "value": c["train_fraction_of_peak"],
                        "met": c["train_fraction_of_peak"] >= TARGET_TRAIN_FRACTION})
        targets.append({"target": f"scoring (batched) >= {TARGET_SCORING_FRACTION:.0%} of matmul rate",
                        "config": c["name"], "value": c["infer_fraction_of_peak"],
                        "met": c["infer_fraction_of_peak"] >= TARGET_SCORING_FRACTION})
    return targets


def run_benchmark(configs: list[BenchConfig], device: str | torch.device = "cpu",
                  matmul_size: int = 2048, matmul_repeats: int = 5, lpips: bool = True,
                  log: Callable[[str], None] = print) -> dict:
    """Measure every configuration; the matmul rate is sampled before and after them."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {str(device)!r}")
    info = machine_info(device)
    meter = ContentionMeter()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    log(f"matmul {matmul_size}x{matmul_size} {str(dtype).removeprefix('torch.')} on {device}")
    samples = matmul_rate(matmul_size, matmul_repeats, device, dtype)
    results = [measure_config(c, device, lpips, log) for c in configs]
    after = matmul_rate(matmul_size, matmul_repeats, device, dtype)
    rate = median(samples + after)
    results = [add_derived(r, rate) for r in results]
    return {
        "machine": info,
        "contention": meter.report(info["cores"]),
        "matmul": {"size": matmul_size, "dtype": str(dtype).removeprefix("torch."),
                   "gflops_before": [s / 1e9 for s in samples], "gflops_after": [s / 1e9 for s in after],
                   "gflops": rate / 1e9},
        "autocast": "bf16" if device.type == "cuda" else "none (fp32)",
        "configs": results,
        "targets": evaluate_targets(results, device),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
