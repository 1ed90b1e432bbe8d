"""``python -m bench.perf.training``: the `real` profile's training, the code before issue 26 against
the code now, side by side in one run (fp32, CPU), written to bench/results/training.{json,md}.

The old path is kept here only: pytorch-msssim's SSIM, the per-tensor AdamW, deterministic mode
filling every new tensor with NaN, and augmentation of the training images' all-zero masks. Both
paths read the same decoded images (kept as uint8 tensors for the run) through the library's own
DataLoader, per-image seeding and ``train_one_epoch``, the same batches and masks in every call.
Calls are interleaved (old and new at 2 threads, old and new at 1 thread, ...) because other processes share
the cores; the record gives medians with the load average and the other processes' CPU share.
``--growth`` adds the cost as the work grows (categories, image size, scoring batch, memory, the
paper's schedule), each from a few steps, extrapolated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from itertools import islice
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from bench.perf.flops import MatmulProbe, count_flops, median
from bench.perf.machine import ContentionMeter, PeakMemory, machine_info
from maskad_core.data.image_norm import apply_standardization
from maskad_core.losses import ReconstructionLoss
from maskad_core.model import build_model
from maskad_core.scoring import SSIM_SIGMA, ssim_window_size
from maskad_core.training.epoch import SeededItems, batch_masks, train_one_epoch
from maskad_core.training.runtime import derive_seed, deterministic, seed_everything
from maskad_core.training.splits import open_dataset
from maskad_core.training.train import lr_factor, make_optimizer

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
CATEGORIES = ["bottle", "kolektor_sdd", "screw", "transistor"]  # every real category in ../shared/data


# ------------------------------------------------------------------ the code before issue 26
class OldLoss(ReconstructionLoss):
    """The loss as it was: pytorch-msssim's SSIM (grouped convolutions, autograd's gradient)."""

    def forward(self, recon, target):
        from pytorch_msssim import ssim

        window = ssim_window_size(recon.shape[-2], recon.shape[-1])
        ssim_term = 1.0 - ssim(recon, target, data_range=1.0, size_average=True, win_size=window,
                               win_sigma=SSIM_SIGMA)
        l1 = (recon - target).abs().mean()
        total = self.ssim_weight * ssim_term + self.l1_weight * l1
        zero = torch.zeros((), device=recon.device)
        return total, {"ssim": ssim_term.detach(), "l1": l1.detach(), "lpips": zero,
                       "total": total.detach()}


class OldItems(Dataset):
    """MVTecAD.__getitem__ as it was: the all-zero mask of a training image augmented too."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        data = self.dataset
        sample = data.samples[index]
        image_u8, mask_u8 = data._cache[index]
        image, mask = image_u8.float().div_(255.0), mask_u8.float()
        if data.augmentations:
            image, mask = data._augment(image, mask, mask_is_zero=False)
        image = apply_standardization(image, data.image_standardization)
        return {"image": image, "label": sample.label, "mask": mask, "has_mask": sample.has_mask,
                "category": sample.category, "defect_type": sample.defect_type,
                "path": str(sample.path)}


@contextlib.contextmanager
def old_deterministic():
    """runtime.deterministic as it was: deterministic kernels, every new tensor filled with NaN."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=True)


def old_optimizer(model, config):
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), foreach=False)


# ------------------------------------------------------------------ one training path
class Path_:
    """A model, loss, optimiser and loader, run ``steps`` steps at a time from the same seeds."""

    def __init__(self, config, dataset, old: bool):
        self.config, self.old = config, old
        seed_everything(config.seed)
        self.model = build_model(config)
        self.criterion = (OldLoss if old else ReconstructionLoss)(
            config.ssim_weight, config.l1_weight, config.lpips_weight, lpips="off")
        self.optimizer = (old_optimizer if old else make_optimizer)(self.model, config)
        steps = 1000
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, steps, steps * 0.1))
        self.items = SeededItems(OldItems(dataset) if old else dataset, config.seed)
        self.generator = torch.Generator()
        self.loader = DataLoader(self.items, batch_size=config.batch_size,
                                 sampler=RandomSampler(self.items, generator=self.generator),
                                 generator=self.generator)
        self.masks = torch.Generator()

    def run(self, steps: int) -> None:
        config = self.config
        self.generator.manual_seed(derive_seed(config.seed, "loader", 0))
        self.masks.manual_seed(derive_seed(config.seed, "masks", 0, 0))
        with old_deterministic() if self.old else deterministic(torch.device("cpu")):
            train_one_epoch(self.model, self.criterion, islice(self.loader, steps), self.optimizer,
                            self.scheduler,
                            lambda count: batch_masks(config, self.model.num_patches, count, self.masks),
                            device=torch.device("cpu"))


def step_gflop(config, batch: int = 4) -> float:
    """Matmul, attention and convolution GFLOP of one training step, per image."""
    model = build_model(config)
    loss = ReconstructionLoss(config.ssim_weight, config.l1_weight, 0.0, lpips="off")
    images = torch.rand(batch, 3, config.image_size, config.image_size)
    masks = batch_masks(config, model.num_patches, batch, torch.Generator().manual_seed(0))
    flops, _ = count_flops(lambda: loss(model(images, masks), images)[0].backward())
    return flops / batch / 1e9


def timed_call(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


# ------------------------------------------------------------------ old against new
def compare(config, dataset, steps: int, rounds: int, threads: list[int], log) -> dict:
    images = steps * config.batch_size
    variants = {}
    for t in sorted(threads, reverse=True):  # old at torch's default (2) first: "today"
        variants[f"old, {t} thread{'s' * (t > 1)}"] = (True, t)
        variants[f"new, {t} thread{'s' * (t > 1)}"] = (False, t)
    paths = {name: Path_(config, dataset, old) for name, (old, _) in variants.items()}
    probes = {t: MatmulProbe(1024, torch.device("cpu"), torch.float32) for t in {2, *threads}}
    walls = {name: [] for name in variants}
    cpus = {name: [] for name in variants}
    for name, (_, t) in variants.items():  # warm-up: one short call each
        torch.set_num_threads(t)
        paths[name].run(1)
    for round_ in range(rounds):
        for name, (_, t) in variants.items():
            torch.set_num_threads(t)
            probes[t].sample()
            wall, cpu = timed_call(lambda name=name: paths[name].run(steps))
            probes[t].sample()
            walls[name].append(wall)
            cpus[name].append(cpu)
            log(f"round {round_ + 1}/{rounds} {name}: {images / wall:.1f} img/s")
    gflop = step_gflop(config)
    rows = {}
    for name, (_, t) in variants.items():
        rate = median(probes[t].samples) / 1e9
        ips = images / median(walls[name])
        rows[name] = {"threads": t, "images_per_s": round(ips, 2),
                      "images_per_s_each_round": [round(images / w, 2) for w in walls[name]],
                      "cpu_seconds_per_image": round(median(cpus[name]) / images, 5),
                      "matmul_gflops": round(rate, 1),
                      "matmul_fraction": round(ips * gflop / rate, 3)}
    return {"steps_per_call": steps, "images_per_call": images, "rounds": rounds,
            "gflop_per_image": round(gflop, 3), "variants": rows}


# ------------------------------------------------------------------ cost as the work grows
def train_rate(config, dataset, steps: int, threads: int) -> tuple[float, float | None]:
    """(images/s of the new path after one warm-up step, peak MiB of the timed steps)."""
    torch.set_num_threads(threads)
    path = Path_(config, dataset, old=False)
    path.run(1)
    with PeakMemory(torch.device("cpu")) as peak:
        wall, _ = timed_call(lambda: path.run(steps))
    return steps * config.batch_size / wall, peak.mib


def growth(config, steps: int, threads: int, log) -> dict:
    from maskad_core.training.config import TrainConfig

    out: dict = {"threads": threads, "steps": steps, "by_categories": [], "by_image_size": [],
                 "scoring_by_batch": []}
    for count in range(1, len(CATEGORIES) + 1):
        cfg = TrainConfig(**{**config.to_dict(), "categories": CATEGORIES[:count]})
        dataset, _ = open_dataset(cfg, "train", augment=True)
        rate, _ = train_rate(cfg, dataset, steps, threads)
        out["by_categories"].append({"categories": CATEGORIES[:count], "images": len(dataset),
                                     "images_per_s": round(rate, 1),
                                     "seconds_per_epoch": round(len(dataset) / rate, 1)})
        log(f"categories {count}: {rate:.1f} img/s")
    dataset = None
    for size in (64, 128, 224):
        cfg = TrainConfig(**{**config.to_dict(), "image_size": size, "smooth_sigma": size / 32})
        dataset, _ = open_dataset(cfg, "train", augment=True)
        rate, peak = train_rate(cfg, dataset, steps, threads)
        out["by_image_size"].append({"image_size": size, "images": len(dataset),
                                     "tokens": (size // cfg.patch_size) ** 2,
                                     "images_per_s": round(rate, 1),
                                     "seconds_per_epoch": round(len(dataset) / rate, 1),
                                     "peak_training_mib": None if peak is None else round(peak)})
        log(f"{size} px: {rate:.1f} img/s")
    model = build_model(config).eval()
    for batch in (1, 4, 16, 64):
        torch.set_num_threads(1 if batch == 1 else threads)
        images = torch.rand(batch, 3, config.image_size, config.image_size)
        masks = batch_masks(config, model.num_patches, batch, torch.Generator().manual_seed(0))
        with torch.inference_mode():
            model(images, masks)
            calls = max(2, 64 // batch)
            with PeakMemory(torch.device("cpu")) as peak:
                wall, _ = timed_call(lambda x=images, m=masks, c=calls: [model(x, m) for _ in range(c)])
        out["scoring_by_batch"].append({"batch": batch, "threads": torch.get_num_threads(),
                                        "images_per_s": round(batch * calls / wall, 1),
                                        "peak_mib": None if peak.mib is None else round(peak.mib)})
        log(f"scoring batch {batch}: {batch * calls / wall:.1f} img/s")
    # the paper's model and schedule: 3,629 images x 1000 epochs, from two steps of batch 4
    paper = TrainConfig(**{**config.to_dict(), "image_size": 224, "embed_dim": 768, "num_heads": 12,
                           "decoder_embed_dim": 512, "decoder_num_heads": 16, "batch_size": 4,
                           "smooth_sigma": 7.0})
    torch.set_num_threads(threads)
    model = build_model(paper)
    loss = ReconstructionLoss(lpips="off")
    optimizer = make_optimizer(model, paper)
    images = torch.rand(4, 3, 224, 224)

    def step():
        masks = batch_masks(paper, model.num_patches, 4, torch.Generator().manual_seed(0))
        total, _ = loss(model(images, masks), images)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    step()
    with PeakMemory(torch.device("cpu")) as peak:
        wall, _ = timed_call(lambda: [step() for _ in range(2)])
    paper_rate = 8 / wall
    real_224 = next(r for r in out["by_image_size"] if r["image_size"] == 224)["images_per_s"]
    out["paper_schedule"] = {
        "images": 3629, "epochs": 1000,
        "paper_model_images_per_s": round(paper_rate, 3),
        "paper_model_peak_training_mib": None if peak.mib is None else round(peak.mib),
        "paper_model_days": round(3629 * 1000 / paper_rate / 86400, 1),
        "real_model_at_224_px_days": round(3629 * 1000 / real_224 / 86400, 2),
    }
    log(f"paper model: {paper_rate:.3f} img/s")
    return out


# ------------------------------------------------------------------ the record
def markdown(results: dict) -> str:
    m, load, cmp_ = results["machine"], results["load"], results["comparison"]
    lines = [
        f"Measured {results['when']} with `{results['command']}` on **{m['cpu']}** ({m['cores']} "
        f"cores), torch {m['torch']}, CPU, fp32, the `real` profile's model (128 px, patch 16, encoder "
        f"96 / decoder 128, E2D4, r 0.75, batch 16, LPIPS off: its weights are absent here) on the real "
        f"training images of {', '.join(results['categories'])} ({results['train_images']} images, "
        f"decoded and resized once: {results['decode_s']} s).",
        "",
        f"The run took {load['wall_s']} s; 1-minute load average {load['load_avg_1min_start']} at the "
        f"start, {load['load_avg_1min_end']} at the end; other processes used "
        f"{100 * load.get('other_processes_cpu_share', float('nan')):.0f}% of the machine's CPU time "
        f"meanwhile. Each call: {cmp_['steps_per_call']} training steps ({cmp_['images_per_call']} "
        f"images, augmentation and data loading included), the variants interleaved, "
        f"{cmp_['rounds']} rounds; medians. A step is {cmp_['gflop_per_image']} GFLOP per image "
        f"(matmuls, attention, convolutions); the matmul rate is a 1024x1024 fp32 `torch.mm` sampled "
        f"around each call at that call's thread count.",
        "",
        "| variant | threads | images/s (median) | each round | CPU ms/image | matmul GFLOP/s | "
        "fraction of the matmul rate | speed-up over old at 2 threads (today) | over old at the same threads |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = cmp_["variants"]
    old = rows["old, 2 threads"]["images_per_s"]
    for name, row in rows.items():
        same = rows[name.replace("new", "old")]["images_per_s"]
        lines.append(f"| {name} | {row['threads']} | {row['images_per_s']} | "
                     f"{', '.join(map(str, row['images_per_s_each_round']))} | "
                     f"{1e3 * row['cpu_seconds_per_image']:.1f} | {row['matmul_gflops']} | "
                     f"{100 * row['matmul_fraction']:.0f}% | {row['images_per_s'] / old:.2f}x | "
                     f"{row['images_per_s'] / same:.2f}x |")
    chosen = f"new, {results['chosen_threads']} thread{'s' * (results['chosen_threads'] > 1)}"
    lines += ["", f"The library's choice of threads for training at the start of this run: "
              f"{results['chosen_threads']} (maskad_core.training.threads): the new code as `maskad train` "
              f"runs it here, {rows[chosen]['images_per_s']} images/s, is "
              f"**{rows[chosen]['images_per_s'] / old:.1f}x** today's code at torch's default 2 threads; "
              "the code changes alone (same threads) give the last column."]
    lines += ["", "Old: the code before issue 26 (pytorch-msssim SSIM, per-tensor AdamW, deterministic "
              "mode filling new tensors with NaN, the training images' zero masks augmented), torch's "
              "default 2 threads. New: the library now. CPU ms/image counts both threads' time "
              "(spin-waits included), so only the one-thread row reads as work done."]
    if "growth" in results:
        g = results["growth"]
        lines += ["", f"## Cost as the work grows (new code, {g['threads']} thread(s), the library's choice; {g['steps']} "
                  "steps per point after one warm-up step, extrapolated to an epoch)", "",
                  "| categories | training images | images/s | seconds per epoch |", "|---|---|---|---|"]
        for row in g["by_categories"]:
            lines.append(f"| {', '.join(row['categories'])} | {row['images']} | {row['images_per_s']} | "
                         f"{row['seconds_per_epoch']} |")
        lines += ["", "Every row is the same model and batch, so its images/s should not depend on the "
                  "categories: their spread is the measurement's noise on the shared cores, and seconds "
                  "per epoch grow with the training images."]
        lines += ["", "| image size (patch 16) | tokens | images/s | seconds per epoch (3 categories) | "
                  "peak training MiB |", "|---|---|---|---|---|"]
        for row in g["by_image_size"]:
            lines.append(f"| {row['image_size']} | {row['tokens']} | {row['images_per_s']} | "
                         f"{row['seconds_per_epoch']} | {row['peak_training_mib']} |")
        lines += ["", "| scoring batch | threads | images/s | peak MiB |", "|---|---|---|---|"]
        for row in g["scoring_by_batch"]:
            lines.append(f"| {row['batch']} | {row['threads']} | {row['images_per_s']} | {row['peak_mib']} |")
        p = g["paper_schedule"]
        lines += ["", f"The paper's schedule, {p['epochs']} epochs of all 15 MVTec AD categories "
                  f"({p['images']} training images), on this CPU: the paper's model (224 px, encoder 768 "
                  f"/ decoder 512) trains at {p['paper_model_images_per_s']} images/s (two steps of "
                  f"batch 4; peak {p['paper_model_peak_training_mib']} MiB), **{p['paper_model_days']} "
                  f"days**; the `real` profile's small model at 224 px, {p['real_model_at_224_px_days']} "
                  "days. Extrapolated from a few steps; a busier machine takes longer."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from maskad_core.study.profiles import study_parameters, train_config

    parser = argparse.ArgumentParser(prog="python -m bench.perf.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed call (default 6)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--growth", action="store_true", help="also the cost as the work grows")
    parser.add_argument("--growth-steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--tag", default="training")
    parser.add_argument("--markdown-from", type=Path, help="rewrite the .md of a saved .json, measure nothing")
    args = parser.parse_args(argv)
    if args.markdown_from is not None:
        results = json.loads(args.markdown_from.read_text())
        args.markdown_from.with_suffix(".md").write_text(markdown(results))
        return 0
    if args.steps < 1 or args.rounds < 1:
        print("error: --steps and --rounds must be >= 1", file=sys.stderr)
        return 2
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    meter = ContentionMeter()
    config = train_config(study_parameters("real"), lpips="off")
    started = time.perf_counter()
    dataset, _ = open_dataset(config, "train", augment=True)
    decode_s = round(time.perf_counter() - started, 1)
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": "python -m bench.perf.training" + (" --growth" if args.growth else ""),
               "machine": machine_info(torch.device("cpu")), "categories": list(config.categories),
               "train_images": len(dataset), "decode_s": decode_s}
    from maskad_core.training.threads import choose_threads

    results["chosen_threads"] = choose_threads("train")  # what train() would take now
    results["comparison"] = compare(config, dataset, args.steps, args.rounds, [1, 2], log)
    if args.growth:
        results["growth"] = growth(config, args.growth_steps, choose_threads("train"), log)
    results["load"] = meter.report(results["machine"]["cores"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{args.tag}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
