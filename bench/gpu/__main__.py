"""``python -m bench.gpu pack|run``: see :mod:`bench.gpu`. Bad input: one line naming it, exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="pack the real data for the GPU run (make gpu-pack)")
    pack.add_argument("--out", default=".gpu-pack", help="the pack folder (git-ignored)")
    pack.add_argument("--source", default=None, help="the real data (default ../shared/data)")
    pack.add_argument("--categories", default=None,
                      help="comma-separated (default bottle,kolektor_sdd,screw,transistor)")
    pack.add_argument("--size", type=int, default=None, help="image side in px (default 224)")
    pack.add_argument("--max-mib", type=float, default=None, help="size limit (default 40)")
    run = commands.add_parser("run", help="train and evaluate the paper's setting on the pack")
    run.add_argument("--pack", required=True, help="the folder `pack` wrote")
    run.add_argument("--out", required=True, help="where gpu-paper.json and gpu-paper.md go")
    run.add_argument("--budget-s", type=float, default=540.0,
                     help="seconds for the whole run, from start-up to the last record")
    run.add_argument("--max-epochs", type=int, default=None,
                     help="cap on the epochs (default: the paper's 1000)")
    run.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                     help="torch.compile the blocks and the loss: auto tries it on CUDA only when "
                          "the eager rate cannot fit the full schedule, and keeps it if faster")
    run.add_argument("--random-baseline", action="store_true",
                     help="also train the random-masking baseline at the same epochs (halves them)")
    run.add_argument("--no-detectors", action="store_true", help="skip the training-free detectors")
    run.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples per interval")
    run.add_argument("--device", default="auto", help="auto (cuda if present), cuda or cpu")
    run.add_argument("--dry-run", action="store_true",
                     help="tiny widths, a few steps, 2 epochs at most: the CPU test of this script")
    return parser


def main(argv: list[str] | None = None, from_process_start: bool = False) -> int:
    args = _parser().parse_args(argv)
    if args.command == "pack":
        from bench.gpu import pack

        options = {k: v for k, v in {"source": args.source, "size": args.size,
                                     "max_mib": args.max_mib}.items() if v is not None}
        if args.categories:
            options["categories"] = [c for c in args.categories.split(",") if c]
        try:
            manifest = pack.pack(args.out, **options)
        except (pack.PackError, ValueError) as error:
            print(f"bench.gpu pack: {error}", file=sys.stderr)
            return 2
        print(f"packed {', '.join(f'{c} {n}' for c, n in manifest['counts'].items())} into "
              f"{args.out}: {manifest['bytes'] / 2**20:.1f} MiB (limit {manifest['max_mib']})")
        return 0
    from bench.gpu import run

    try:
        run.check_arguments(args)
    except ValueError as error:
        print(f"bench.gpu run: {error}", file=sys.stderr)
        return 2
    return run.run(Path(args.pack), Path(args.out), args, from_process_start)


if __name__ == "__main__":
    raise SystemExit(main(from_process_start=True))
