"""``python -m bench.gpu run``: the phases of the GPU run under one time budget.

load the pack onto the device -> measure the device (bf16 matmul rate) and the step (a short
throughput phase; torch.compile tried where it may pay) -> choose the epochs that fit -> train ->
evaluate -> (the random-masking baseline) -> the training-free detectors. The record is rewritten
after every phase and every 30 s of training, so a run stopped by its limit still leaves one.
"""

from __future__ import annotations

import datetime
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from bench.gpu import assess, probe, record
from bench.gpu.data import load_split, read_manifest
from bench.gpu.settings import DRY, MVTEC_ROWS, PAPER, RECIPE
from bench.gpu.train import Arm


def _process_age() -> float:
    """Seconds since this process started (Linux's /proc; 0 elsewhere): the budget counts the
    interpreter's start and torch's import too."""
    try:
        import os

        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - start)
    except (OSError, ValueError, IndexError):
        return 0.0


STARTED = time.monotonic()  # reset by run(): from the process's start under `python -m bench.gpu`
SAVE_EVERY_S = 30.0
WRITE_RESERVE_S = 5.0  # the last record's writing
DETECTOR_RESERVE_S = 45.0  # the training-free detectors, on a GPU (each is skipped past the deadline)
COMPILE_MIN_LEFT_S = 240.0  # auto: not worth a compile's minute unless this much time is left


def check_arguments(args) -> None:
    if not (args.budget_s > 0 and math.isfinite(args.budget_s)):
        raise ValueError(f"--budget-s must be a number of seconds > 0, got {args.budget_s}")
    if args.max_epochs is not None and args.max_epochs < 1:
        raise ValueError(f"--max-epochs must be >= 1, got {args.max_epochs}")
    if args.bootstrap < 10:
        raise ValueError(f"--bootstrap must be >= 10 resamples, got {args.bootstrap}")
    if args.device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"--device must be one of auto, cuda, cpu; got {args.device!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available here; use auto or cpu")
    read_manifest(Path(args.pack))  # names the missing pack


def _device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _device_info(device: torch.device) -> dict:
    import timm

    info = {"type": device.type, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version(), "cuda": torch.version.cuda}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}")
    else:
        info.update(name=f"CPU ({platform.processor() or platform.machine()}), "
                         f"{torch.get_num_threads()} threads", cuda=None)
    return info


def _criterion(device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The study's ReconstructionLoss with LPIPS off where pytorch-msssim imports, else the
    torch-only fallback; and what the record says about both."""
    reason = ("LPIPS off: its ImageNet AlexNet weights are not on this machine and it has no "
              "network (the loss is 0.1 (1 - SSIM) + 1.0 L1)")
    try:
        from maskad_core.losses import ReconstructionLoss
    except ImportError as error:
        from bench.gpu.fallbacks import SSIMLoss

        return (SSIMLoss(RECIPE["ssim_weight"], RECIPE["l1_weight"]).to(device),
                {"loss": f"bench.gpu.fallbacks.SSIMLoss ({error.name or error} missing): SSIM as "
                         "pytorch-msssim computes it, in torch; checked equal in tests",
                 "lpips": reason})
    criterion = ReconstructionLoss(RECIPE["ssim_weight"], RECIPE["l1_weight"], 0.0, lpips="off")
    # the library's SSIM needs no pytorch-msssim (its own separable filter, equal to it in tests)
    return criterion.to(device), {"loss": "maskad_core.losses.ReconstructionLoss (its own SSIM, "
                                          "equal to pytorch-msssim's)", "lpips": reason}


class Run:
    """The state of one run: its arguments, record, device, data and clock."""

    def __init__(self, pack: Path, out: Path, args):
        self.pack, self.out, self.args = pack, out, args
        self.device = _device(args.device)
        if self.device.type == "cpu" and args.dry_run:
            torch.set_num_threads(1)  # two threads on two shared cores wait on each other (issue 26)
        self.deadline = STARTED + args.budget_s
        self.shape = {**PAPER, **(DRY if args.dry_run else {})}
        self.cap = min(args.max_epochs or PAPER["epochs"], 2 if args.dry_run else PAPER["epochs"])
        self.record = {"record": record.NAME, "status": "running: start", "dry_run": args.dry_run,
                       "command": "python -m bench.gpu run " + _argv_text(args),
                       "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                       "budget_s": args.budget_s, "device": _device_info(self.device),
                       "phases_s": {}, "fallbacks": {}, "arms": {}}
        self._saved = time.monotonic()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self, status: str | None = None) -> None:
        if status:
            self.record["status"] = status
        self.record["elapsed_s"] = time.monotonic() - STARTED
        if self.device.type == "cuda":
            self.record["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        record.save(self.record, self.out)
        self._saved = time.monotonic()

    def phase(self, name: str, started: float) -> None:
        self.record["phases_s"][name] = time.monotonic() - started
        self.save(f"running: after {name}")

    # -- phases
    def load(self) -> None:
        started = time.monotonic()
        manifest = read_manifest(self.pack)
        self.train = load_split(self.pack, manifest, "train")
        self.test = load_split(self.pack, manifest, "test")
        if int(manifest["image_size"]) != self.shape["image_size"]:
            if not self.args.dry_run:
                raise ValueError(f"--pack {self.pack} holds {manifest['image_size']} px images; the "
                                 f"paper's setting needs {self.shape['image_size']} (pack it again)")
            self.shape["image_size"] = int(manifest["image_size"])
        self.train_on_device = self.train.images.to(self.device)
        self.record["pack"] = {
            **{k: manifest.get(k) for k in ("source", "created_utc", "git_commit", "image_size", "resize",
                                            "train_format", "test_format", "grey", "categories",
                                            "counts", "paper_table1")},
            "mib": manifest["bytes"] / 2**20, "train_images": int(self.train.images.shape[0]),
            "test_images": int(self.test.images.shape[0])}
        self.record["settings"] = {"model": self.shape, "batch_size": PAPER["batch_size"],
                                   "lr": PAPER["lr"], "warmup_epochs": PAPER["warmup_epochs"],
                                   "recipe": RECIPE, "autocast": "bf16" if self.device.type == "cuda" else "none",
                                   "attention": "timm Block: F.scaled_dot_product_attention"}
        self.criterion, notes = _criterion(self.device)
        self.functions, metrics_note = assess.metric_functions()
        self.record["fallbacks"].update(notes, metrics=metrics_note,
                                        augmentation="bench.gpu.augment.augment_batch: crop, rotate, "
                                        "flip drawn per image, one resampling for the batch on the device")
        self.phase("load", started)

    def arm(self, masking: str) -> Arm:
        return Arm(self.shape, self.train_on_device, self.device, self.criterion, masking,
                   PAPER["lr"], PAPER["batch_size"], RECIPE["seed"])

    def measure(self) -> None:
        """The matmul rate, FLOPs per image, the eager step, the scoring rate, compile if it pays."""
        started = time.monotonic()
        dry = self.args.dry_run
        warm, steps = (1, 2) if dry else (5, 30)
        rate = probe.matmul_rate(self.device, dry)
        self.main = self.arm("complementary")
        flops = probe.training_flops_per_image(lambda: self.main.step(self.main.random_batch(2)), 2)
        self.main.time_steps(warm)
        eager = self.main.time_steps(steps)
        throughput = {"eager_step_s": eager, "step_s": eager, "mode": "eager",
                      "matmul": rate, "matmul_flops_per_s": rate["flops_per_s"], "flops_per_image": flops,
                      "optimizer": self.main.optimizer_kind}
        self.record["throughput"] = throughput
        score_started = time.monotonic()
        batch = self.test.images[:64]
        assess.maps_and_eq1(self.main.model, batch, "complementary", self.shape["mask_ratio"], "probe",
                            0.0, self.device)
        throughput["scoring_images_per_s"] = batch.shape[0] / (time.monotonic() - score_started)
        self._maybe_compile(throughput, warm, steps)
        self._throughput(throughput)
        self.phase("measure", started)

    def _maybe_compile(self, throughput: dict, warm: int, steps: int) -> None:
        mode = self.args.compile
        epoch_s = throughput["eager_step_s"] * self.main.steps_per_epoch
        fits = epoch_s * self.cap < self.left() * 0.6
        if mode == "off" or (mode == "auto" and (self.device.type != "cuda" or fits
                                                 or self.left() < COMPILE_MIN_LEFT_S)):
            why = {"off": "--compile off", "auto": "auto: not on CUDA" if self.device.type != "cuda"
                   else ("auto: the eager rate fits the full schedule" if fits else
                         f"auto: under {COMPILE_MIN_LEFT_S:.0f} s left")}[mode]
            self.record["fallbacks"]["compile"] = f"eager ({why})"
            return
        started = time.monotonic()
        try:
            self.main.compile()
            self.main.time_steps(warm + 2)
            last = self.train.images.shape[0] % PAPER["batch_size"]
            if last:
                self.main.time_steps(1, batch=last)  # the epoch's last, smaller batch compiles too
            throughput["compile_s"] = time.monotonic() - started
            compiled = self.main.time_steps(steps)
        except Exception as error:  # any failure of the compiler: the eager step it is
            self.main.uncompile()
            self.record["fallbacks"]["compile"] = f"eager (torch.compile failed: {type(error).__name__}: {str(error)[:200]})"
            return
        throughput["compiled_step_s"] = compiled
        if compiled < throughput["eager_step_s"]:
            throughput.update(step_s=compiled, mode="compiled blocks and loss")
            self.record["fallbacks"]["compile"] = (f"torch.compile of the blocks and the loss: "
                                                   f"{compiled * 1e3:.2f} ms against eager "
                                                   f"{throughput['eager_step_s'] * 1e3:.2f} ms a step")
        else:
            self.main.uncompile()
            self.record["fallbacks"]["compile"] = (f"eager (compiled {compiled * 1e3:.2f} ms a step, "
                                                   f"not faster than eager)")

    def _throughput(self, throughput: dict) -> None:
        images_per_s = PAPER["batch_size"] / throughput["step_s"]
        throughput["images_per_s"] = images_per_s
        if throughput["flops_per_image"]:
            throughput["fraction_of_matmul_rate"] = (images_per_s * throughput["flops_per_image"]
                                                     / throughput["matmul_flops_per_s"])

    def plan(self) -> None:
        """The epochs that fit, for every arm to be trained."""
        step_s = self.record["throughput"]["step_s"]
        epoch_s = step_s * self.main.steps_per_epoch
        arms = {"complementary": epoch_s}
        if self.args.random_baseline:
            baseline = self.arm("random")
            baseline.time_steps(1 if self.args.dry_run else 5)
            arms["random"] = baseline.time_steps(2 if self.args.dry_run else 20) * baseline.steps_per_epoch
            self.baseline = baseline
        scored = self.train.images.shape[0] + self.test.images.shape[0]
        evaluation_s = 1.5 * scored / self.record["throughput"]["scoring_images_per_s"] + 15.0
        reserve = evaluation_s * len(arms) + WRITE_RESERVE_S + (
            0.0 if self.args.no_detectors else DETECTOR_RESERVE_S)
        train_s = self.left() - reserve
        epochs, why = probe.choose_epochs(train_s, sum(arms.values()), self.cap)
        self.record["epochs"] = {"planned": epochs, "cap": PAPER["epochs"], "why": why,
                                 "seconds_per_epoch": arms, "reserved_s": reserve, "run": 0}
        self.train_deadline = time.monotonic() + train_s
        self.planned = epochs

    def train_arm(self, masking: str, arm: Arm) -> None:
        started = time.monotonic()
        arm.reset(self.planned, PAPER["warmup_epochs"])
        result = self.record["arms"].setdefault(masking, {"loss_curve": []})
        share = (self.train_deadline - started) if masking == "random" or not self.args.random_baseline \
            else (self.train_deadline - started) * self.record["epochs"]["seconds_per_epoch"]["complementary"] \
            / sum(self.record["epochs"]["seconds_per_epoch"].values())
        arm_deadline = started + share
        for _ in range(self.planned):
            row = arm.train_epoch()
            result["loss_curve"].append(row)
            result["epochs"] = arm.epoch
            if not math.isfinite(row["total"]):
                result["stopped"] = f"the loss became non-finite in epoch {arm.epoch}"
                break
            if arm.epoch < self.planned and time.monotonic() + row["seconds"] > arm_deadline:
                result["stopped"] = (f"stopped after epoch {arm.epoch} of {self.planned}: the next "
                                     f"would pass the time planned for training")
                break
            if time.monotonic() - self._saved > SAVE_EVERY_S:
                result["train_s"] = time.monotonic() - started
                self.save(f"running: training {masking}, epoch {arm.epoch} of {self.planned}")
        result["train_s"] = time.monotonic() - started
        result["images_per_s"] = arm.epoch * arm.images.shape[0] / result["train_s"]
        if masking == "complementary":
            self.record["epochs"]["run"] = arm.epoch
            if "stopped" in result:
                self.record["epochs"]["stopped"] = result["stopped"]
        self.phase(f"train_{masking}", started)

    def evaluate_arm(self, masking: str, arm: Arm) -> None:
        started = time.monotonic()
        arm.uncompile()
        evaluation = assess.evaluate_arm(arm.model, self.train, self.test, masking,
                                         self.shape["mask_ratio"], self.device, self.functions,
                                         self.args.bootstrap)
        evaluation["score"] = (f"max of the l2_centered map, smoothed (sigma {evaluation['smooth_sigma']:g}) "
                               "and standardised per pixel by the normal training images' maps")
        result = self.record["arms"][masking]
        result["evaluation"] = evaluation
        rows = [evaluation["per_category"][c] for c in MVTEC_ROWS if c in evaluation["per_category"]]
        paper = self.record["pack"].get("paper_table1", {})
        if rows:
            present = [c for c in MVTEC_ROWS if c in evaluation["per_category"]]
            result["mvtec_mean"] = {"categories": present,
                                    "default": float(np.mean([r["default"]["auroc"] for r in rows])),
                                    "eq1": float(np.mean([r["eq1"]["auroc"] for r in rows])),
                                    "paper": float(np.mean([paper[c] for c in present if c in paper]))
                                    if all(c in paper for c in present) else None}
        self.phase(f"evaluate_{masking}", started)

    def detectors(self) -> None:
        started = time.monotonic()
        self.record["detectors"] = assess.evaluate_detectors(
            self.train, self.test, self.device, self.functions, self.args.bootstrap,
            self.deadline - WRITE_RESERVE_S)
        self.phase("detectors", started)


def _argv_text(args) -> str:
    parts = [f"--pack {args.pack}", f"--budget-s {args.budget_s:g}", f"--out {args.out}"]
    parts += [f"--max-epochs {args.max_epochs}"] if args.max_epochs else []
    parts += [f"--compile {args.compile}"] if args.compile != "auto" else []
    parts += [flag for flag, on in (("--random-baseline", args.random_baseline),
                                    ("--no-detectors", args.no_detectors), ("--dry-run", args.dry_run)) if on]
    return " ".join(parts)


def run(pack: Path, out: Path, args, from_process_start: bool = False) -> int:
    """The whole run; ``from_process_start``: the budget began when the interpreter did (the
    command line), else now (a caller in a longer process, such as the tests)."""
    global STARTED
    STARTED = time.monotonic() - (_process_age() if from_process_start else 0.0)
    state = Run(pack, out, args)
    state.save()
    try:
        state.load()
        state.measure()
        state.plan()
        state.train_arm("complementary", state.main)
        state.evaluate_arm("complementary", state.main)
        if args.random_baseline:
            state.train_arm("random", state.baseline)
            state.evaluate_arm("random", state.baseline)
        if not args.no_detectors:
            state.detectors()
    except Exception as error:
        state.save(f"failed in {state.record['status'].removeprefix('running: ')}: "
                   f"{type(error).__name__}: {error}")
        raise
    state.save("complete")
    print(f"bench.gpu run: complete in {time.monotonic() - STARTED:.0f} s; {out / record.NAME}.md")
    return 0
