"""``python -m bench``: measure, print and write bench/results/local/<tag>.{json,md} (git-ignored);
the committed records in bench/results/ are written only when named: ``--out bench/results``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from bench.perf.configs import default_configs, quick_configs
from bench.perf.core import profile_config, run_benchmark
from bench.perf.report import markdown, write_results

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"  # the committed records
LOCAL_DIR = RESULTS_DIR / "local"  # git-ignored: a measurement replaces no record unless asked


def build_parser(prog: str = "python -m bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="cuda runs with bf16 autocast (default: cpu, fp32)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny model and a small matmul: seconds, for tests and smoke checks")
    parser.add_argument("--configs", nargs="+", metavar="NAME",
                        help="only these configurations (default: all)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default: per config)")
    parser.add_argument("--no-lpips", action="store_true", help="skip the training step with LPIPS")
    parser.add_argument("--no-thread-sweep", action="store_true",
                        help="skip the 1..cores threads comparison (CPU only)")
    parser.add_argument("--matmul-size", type=int, help="side of the reference matmul (default 2048, "
                        "8192 on cuda, 256 with --quick)")
    parser.add_argument("--profile", action="store_true",
                        help="also write torch.profiler tables (scoring, training step) to <tag>.profile.txt")
    parser.add_argument("--out", type=Path, default=LOCAL_DIR,
                        help=f"output folder (default {LOCAL_DIR}, git-ignored; --out {RESULTS_DIR} "
                             "replaces the committed record)")
    parser.add_argument("--tag", help="output file name without suffix (default: the device, or quick)")


def command_line(args: argparse.Namespace) -> str:
    """The options that shaped the measurement, as a command to re-run it."""
    parts = ["python -m bench"]
    if args.device != "cpu":
        parts.append(f"--device {args.device}")
    for flag, on in (("--quick", args.quick), ("--no-lpips", args.no_lpips),
                     ("--no-thread-sweep", args.no_thread_sweep)):
        if on:
            parts.append(flag)
    for flag, value in (("--configs", " ".join(args.configs or [])), ("--threads", args.threads),
                        ("--repeats", args.repeats), ("--matmul-size", args.matmul_size)):
        if value:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    configs = quick_configs() if args.quick else default_configs()
    if args.configs:
        known = {c.name: c for c in configs}
        unknown = [n for n in args.configs if n not in known]
        if unknown:
            print(f"error: unknown configuration(s) {unknown}; choose from {sorted(known)}", file=sys.stderr)
            return 2
        configs = [known[n] for n in args.configs]
    if args.repeats is not None:
        if args.repeats < 1:
            print(f"error: --repeats must be >= 1, got {args.repeats}", file=sys.stderr)
            return 2
        configs = [dataclasses.replace(c, repeats=args.repeats) for c in configs]
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    size = args.matmul_size or (256 if args.quick else 8192 if args.device == "cuda" else 2048)
    try:
        results = run_benchmark(configs, device=args.device, matmul_size=size,
                                matmul_repeats=2 if args.quick else 5, lpips=not args.no_lpips,
                                sweep_threads=not args.no_thread_sweep,
                                log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tag = args.tag or ("quick" if args.quick else args.device)
    results["command"] = command_line(args)
    json_path, md_path = write_results(results, args.out, tag)
    print(markdown(results))
    print(f"wrote {json_path} and {md_path}")
    if args.profile:
        profile_path = args.out / f"{tag}.profile.txt"
        profile_path.write_text("\n".join(profile_config(c, torch.device(args.device)) for c in configs))
        print(f"wrote {profile_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
