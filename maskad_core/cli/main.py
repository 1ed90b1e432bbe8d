"""The ``maskad`` command line: train, evaluate, score, baseline, data synth, study, bench.

Each subcommand is one ``register_<name>(subparsers)`` function that adds its parser and sets
``func``; to add a command write such a function in your module and name it in ``COMMANDS`` below,
with the line ``maskad --help`` shows for it. Only the command being run is registered in full
(its module imported), so ``maskad --help`` imports no torch. ``maskad bench`` is the exception: the benchmark is a program beside the package
(``python -m bench`` in the source tree), which the package never imports; :func:`main` hands it
its arguments unparsed.  Errors a user can fix (bad argument, unknown category or
key, missing run or data) print one line ``maskad: error: ...`` on stderr and exit with status 2
(``EXIT_STATUSES``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from maskad_core.data.paths import SOURCE_ROOT
from maskad_core.training import threads  # torch-free: torch is imported when threads are set

if TYPE_CHECKING:  # imported for the annotation only: the config module imports torch
    from maskad_core.training.config import TrainConfig

EXIT_USAGE = 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process the signal ended
EXIT_STATUSES = ("exit status: 0 done; 1 maskad score could not read some images (the rest are "
                 "scored, the others listed in skipped.csv); 2 a user error, one line on stderr "
                 "('maskad: error: ...'), nothing written; 130 interrupted (Ctrl-C); 143 terminated "
                 "(SIGTERM); partial outputs are removed in both cases")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command (no usage dump)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


class UsageError(Exception):
    pass


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every option; epilogs keep their line breaks."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32)


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


class LaunchError(RuntimeError):
    """The distributed launcher failed."""


def _config_epilog() -> str:
    from maskad_core.training.config import field_defaults

    lines = ["configuration keys (override with key=value; lists comma-separated, none for empty):"]
    for key, value in field_defaults().items():
        shown = ",".join(value) if isinstance(value, list) else value
        lines.append(f"  {key}={shown}")
    return "\n".join(lines)


# ------------------------------------------------------------------ train
def register_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train one model on the given categories (multi-class), then evaluate it",
        description=_wrap("Train the masked autoencoder on every given category at once, evaluate it on "
                    "the test split and write a run folder. The same configuration again re-uses "
                    "the finished run; an unfinished one is resumed."),
        epilog=_config_epilog(), formatter_class=_Formatter)  # imports torch: train's parser only
    parser.add_argument("--data", metavar="ROOT", default=None,
                        help="MVTec AD-layout data folder; None: the embedded synthetic set")
    parser.add_argument("--categories", default=None,
                        help="comma-separated categories; None: every category found")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="YAML file of settings; key=value arguments override it")
    parser.add_argument("--resume", action="store_true",
                        help="require an unfinished run of this configuration and resume it "
                             "(unfinished runs are resumed anyway; to resume a run folder, pass "
                             "--config RUN/config.yaml)")
    parser.add_argument("--restart", action="store_true",
                        help="discard an unfinished run's checkpoint and train from scratch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes for DistributedDataParallel (launches torch.distributed.run)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="configuration overrides")
    parser.set_defaults(func=cmd_train)


def config_from_args(args):
    """The TrainConfig of ``maskad train``'s arguments, validated."""
    from maskad_core.training.config import TrainConfig

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    extra = {}
    if args.data is not None:
        if not Path(args.data).expanduser().is_dir():
            raise FileNotFoundError(f"data folder {args.data} does not exist")
        extra["data_root"] = str(Path(args.data).expanduser().resolve())
    if args.categories is not None:
        extra["categories"] = args.categories
    return config.with_overrides(extra).with_overrides(args.overrides).validate()


def cmd_train(args) -> int:
    from maskad_core.evaluation.run_record import train_and_evaluate
    from maskad_core.training import runs

    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    config = config_from_args(args)
    if args.resume and args.restart:
        raise ValueError("--resume and --restart contradict each other")
    path = runs.run_path(config)
    if args.resume and not (path / runs.CHECKPOINT_FILE).is_file() \
            and not (path / runs.DONE_FILE).is_file():
        raise FileNotFoundError(f"nothing to resume: run {path} has no checkpoint")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return launch_distributed(args, config)
    run = train_and_evaluate(config, resume=not args.restart, quiet=args.quiet)
    if not args.quiet and os.environ.get("RANK", "0") == "0":
        print(f"run: {run.path}")
    return 0


def launch_distributed(args, config: TrainConfig) -> int:
    """Re-run this training under torch.distributed.run with --nproc processes on this machine."""
    import tempfile

    from maskad_core.training import runs
    from maskad_core.training.splits import check_data

    check_data(config)  # bad data: one clear error here, not one traceback per process
    folder = tempfile.mkdtemp(prefix="maskad-launch-")
    config_file = Path(folder) / "config.yaml"
    config.to_yaml(config_file)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.nproc}", "-m", "maskad_core", "train",
               "--config", str(config_file)]
    if args.restart:
        command.append("--restart")
    if args.quiet:
        command.append("--quiet")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    try:
        result = subprocess.run(command, env=env)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result.returncode:
        raise LaunchError(f"distributed training failed (exit status {result.returncode}); "
                           "see the messages above")
    if not args.quiet:
        print(f"run: {runs.run_path(config)}")
    return 0


# ------------------------------------------------------------------ data
def register_data(subparsers) -> None:
    from maskad_core.data import synthetic

    parser = subparsers.add_parser("data", help="data sets: write the synthetic set",
                                   formatter_class=_Formatter)
    data_commands = parser.add_subparsers(dest="data_command", metavar="{synth}", required=True,
                                          parser_class=_Parser)
    synth = data_commands.add_parser(
        "synth", help="write the embedded synthetic data set in MVTec AD layout",
        description=_wrap("Generate the procedural industrial inspection set (deterministic for a seed)."),
        formatter_class=_Formatter)
    synth.add_argument("--out", metavar="DIR", required=True, help="output folder")
    synth.add_argument("--seed", type=int, default=synthetic.DEFAULT_SEED, help="random seed")
    synth.add_argument("--image-size", type=int, default=synthetic.DEFAULT_IMAGE_SIZE,
                       help="image side in pixels")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace a previously generated set in DIR (other files are never deleted)")
    synth.set_defaults(func=cmd_data_synth)


def cmd_data_synth(args) -> int:
    from maskad_core.data.synthetic import generate_synthetic

    root = generate_synthetic(args.out, seed=args.seed, image_size=args.image_size,
                              overwrite=args.overwrite)
    print(f"synthetic data set: {root}")
    return 0


# ------------------------------------------------------------------ bench
def register_bench(subparsers) -> None:
    """``maskad bench [ARGS]``, listed in ``maskad --help``; :func:`main` runs it (see run_bench)."""
    if (SOURCE_ROOT / "bench" / "__main__.py").is_file():  # a wheel has no bench/ folder
        subparsers.add_parser("bench", add_help=False,
                              help="the performance benchmark: python -m bench ARGS (see --help)")


def run_bench(arguments: list[str]) -> int:
    """``python -m bench ARGS`` in the source tree: the benchmark parses its own arguments."""
    if not (SOURCE_ROOT / "bench" / "__main__.py").is_file():
        raise UsageError(f"maskad bench needs the source tree's bench/ folder; {SOURCE_ROOT} has none")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "bench", *arguments], env=env).returncode


# ------------------------------------------------------------------ entry point
# command: (its line in `maskad --help`, "module:function" that registers it in full)
COMMANDS = {
    "train": ("train one model on the given categories (multi-class), then evaluate it",
              "maskad_core.cli.main:register_train"),
    "evaluate": ("evaluate a run: per-category metrics table with a mean row",
                 "maskad_core.cli.evaluate:register_evaluate"),
    "score": ("score new images with a run's model; heat maps and a CSV",
              "maskad_core.cli.evaluate:register_score"),
    "baseline": ("training-free detectors (the floors and the confound probes)",
                 "maskad_core.cli.evaluate:register_baseline"),
    "data": ("data sets: write the synthetic set", "maskad_core.cli.main:register_data"),
    "study": ("run the seven notebooks with a profile's parameters, then build the book",
              "maskad_core.study.runner:register_study"),
    "bench": ("the performance benchmark: python -m bench ARGS (see --help)",
              "maskad_core.cli.main:register_bench"),
}


def _register(name: str, subparsers) -> None:
    module, function = COMMANDS[name][1].split(":")
    register = getattr(import_module(module), function)
    if "formatter" in inspect.signature(register).parameters:
        register(subparsers, formatter=_Formatter)
    else:
        register(subparsers)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``maskad`` parser: every command in full (None), or ``command`` in full and the others
    as their one line of help (what parsing one command line needs; "" for none in full)."""
    parser = _Parser(prog="maskad", formatter_class=_Formatter,
                     description=_wrap("Improved masked autoencoder (complementary masking) for multi-class "
                                       "industrial image anomaly detection."),
                     epilog=_wrap(EXIT_STATUSES))
    threads.add_argument(parser)  # maskad --threads N COMMAND ...
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=_Parser)
    for name, (summary, _) in COMMANDS.items():
        if command is None or name == command:
            _register(name, subparsers)
        elif name != "bench" or (SOURCE_ROOT / "bench" / "__main__.py").is_file():
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse, letting key=value overrides sit anywhere among the options (argparse alone takes
    positionals only in one run)."""
    # the command is the first word that names one (maskad --threads N COMMAND ...)
    parser = build_parser(next((a for a in argv if a in COMMANDS), ""))
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def _user_errors() -> tuple[type[BaseException], ...]:
    from maskad_core.data.mvtec import DataError
    from maskad_core.losses import LPIPSUnavailableError
    from maskad_core.training.runs import RunLockedError
    from maskad_core.training.train import TrainingDivergedError

    return (UsageError, ValueError, DataError, FileNotFoundError, NotADirectoryError,
            RunLockedError, TrainingDivergedError, LPIPSUnavailableError, LaunchError)


class Terminated(BaseException):
    """SIGTERM arrived: raised where the program is, so that its clean-ups (partial outputs) run."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = _catch_sigterm()
    try:
        if argv[:1] == ["bench"]:
            return run_bench(argv[1:])
        args = parse_args(argv)
        threads.apply_argument(args)
        return int(args.func(args) or 0)
    except SystemExit:  # --help: before the clause below, whose look-up imports torch
        raise
    except _user_errors() as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"maskad: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # what the checks before the work could not foresee (disk full, ...)
        where = f" ({error.filename})" if error.filename else ""
        print(f"maskad: error: {error.strerror or type(error).__name__}{where}: check that path's "
              "permissions and free space", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("maskad: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("maskad: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _catch_sigterm():
    """Turn SIGTERM into Terminated while main runs (the main thread only can); the previous handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate)


if __name__ == "__main__":
    sys.exit(main())
