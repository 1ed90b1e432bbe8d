"""The lab profile, measured as a teacher would run it: ``maskad study --profile lab`` from an empty
run cache, timed from start to book.

    python -m bench.records.lab                 # -> bench/results/lab.{json,md}
    python -m bench.records.lab --keep          # keep the temporary folder (executed notebooks, runs, log)
    python -m bench.records.lab --wait-quiet 60 # first wait (at most 60 min) for a 1-minute load below 0.5
    python -m bench.records.lab --wait-quiet 90 --busy-share 0.1 --busy-minutes 1 --attempts 4
                                        # on a shared machine: start again, from scratch, when
                                        # other jobs take over 10% of the cores for a minute

What it does: copies the book's sources and the notebooks as they are in the working tree into a
temporary book root (``maskad_core.study.runner.stage_book_sources``; the executed editions of the
repository are not touched), points ``MASKAD_HOME`` at an empty folder beside it (so the generated
data set and every training run are made from scratch), runs ``maskad study --profile lab --root
<temporary root>`` as a subprocess and times it. Then it reads the two training runs the lesson
compares from their run folders (``metrics.json``): the main model (complementary masking) and the
random-mask baseline of the same budget, seed 0, with their training minutes and mean image AUROC,
and the difference. The machine (processor, cores), its load average before and after and the share
of the CPU other processes used meanwhile are recorded with the numbers: the minutes are this
machine's, under that load.

The record is a benchmark value, not a test: tests/test_lab.py reads it back (the whole study within
the 15 minutes of a class period, the run ids those of the lab profile's settings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from maskad_core.training.runtime import cpu_name

RESULTS = Path(__file__).resolve().parents[1] / "results"
REPO = Path(__file__).resolve().parents[2]
PROFILE = "lab"
LIMIT_MINUTES = 15.0  # a class period leaves this much for the study (book/teaching.md)
SEED = 0


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine (all cores) from /proc/stat; None where unavailable."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()
    except OSError:
        return ""


def run_record(config) -> dict:
    """The run folder of ``config`` under the current MASKAD_HOME: id, settings, minutes, AUROC."""
    from maskad_core.training.runs import Run, run_path

    path = run_path(config)
    record = {"run": path.name, "masking": config.masking, "seed": config.seed,
              "config_hash": config.hash(), "found": (path / "metrics.json").is_file()}
    if not record["found"]:
        return record
    run = Run(path)
    metrics = run.metrics
    data = json.loads((path / "data.json").read_text())
    record.update({
        "data_digest": data["digest"],
        "recorded_config_hash": metrics["config_hash"],
        "image_auroc": round(float(metrics["image_auroc"]), 4),
        "headline_score": metrics.get("headline_score"),
        "training_minutes": round(metrics["training"]["wall_time_s"] / 60, 2),
        "epochs": metrics["training"]["epochs"],
        "lpips_active": metrics["training"].get("lpips_active"),
        "finished": metrics.get("finished"),
    })
    return record


def cpu_record() -> dict | None:
    """The cpu profile's three-seed record (bench/results/quality.json), which the lab's main model
    shares: its mean image AUROC, complementary and random, mean and standard deviation over seeds."""
    path = RESULTS / "quality.json"
    try:
        profiles = json.loads(path.read_text())["profiles"]
    except (OSError, ValueError, KeyError):
        return None
    for entry in profiles:
        if entry.get("profile") == "cpu":
            return {"date": entry.get("date"), "command": entry.get("command"),
                    "config": entry.get("config"), "seeds": entry.get("seeds")}
    return None


def wait_for_quiet(max_minutes: float, threshold: float, log=print) -> float:
    """Wait until the 1-minute load average is below ``threshold`` (another job on the machine
    slows torch's threads far more than its share of the cores), at most ``max_minutes``;
    returns the minutes waited."""
    start = time.perf_counter()
    while os.getloadavg()[0] >= threshold and time.perf_counter() - start < max_minutes * 60:
        log(f"bench.records.lab: load {os.getloadavg()[0]:.2f} >= {threshold}; waiting")
        time.sleep(30)
    return round((time.perf_counter() - start) / 60, 1)


class ContentionGuard:
    """Watches the CPU time of the processes outside the study's process tree. Another job on a
    2-core machine does not slow the study by its share of the cores but many times more (torch's
    threads wait for each other), so a measurement taken then says nothing about a class's laptop:
    ``busy()`` is True once others used more than ``share`` of the cores in ``windows`` consecutive
    windows of ``window_s`` seconds. Needs psutil; without it nothing is ever busy."""

    def __init__(self, root_pid: int, share: float, window_s: float = 60.0, windows: int = 2):
        self.root_pid, self.share, self.window_s, self.windows = root_pid, share, window_s, windows
        self.strikes, self.shares = 0, []
        self.window_start = time.perf_counter()
        self.times = self._others()

    def _others(self) -> dict[int, float]:
        try:
            import psutil
        except ImportError:
            return {}
        try:
            tree = {self.root_pid, os.getpid()} | {c.pid for c in psutil.Process(self.root_pid).children(recursive=True)}
        except psutil.Error:
            tree = {self.root_pid, os.getpid()}
        times = {}
        for proc in psutil.process_iter(["pid", "cpu_times"]):
            if proc.info["pid"] not in tree and proc.info["cpu_times"] is not None:
                times[proc.info["pid"]] = proc.info["cpu_times"].user + proc.info["cpu_times"].system
        return times

    def busy(self) -> bool:
        elapsed = time.perf_counter() - self.window_start
        if elapsed < self.window_s:
            return False
        now = self._others()
        used = sum(max(0.0, value - self.times.get(pid, 0.0)) for pid, value in now.items())
        share = used / (elapsed * cores())
        self.shares.append(round(share, 3))
        self.strikes = self.strikes + 1 if share > self.share else 0
        self.window_start, self.times = time.perf_counter(), now
        return self.strikes >= self.windows


def stop_tree(proc: subprocess.Popen) -> None:
    """End the study this benchmark started: its descendants (kernels), then itself, by pid."""
    try:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
    except Exception:  # psutil missing, or the process already gone
        children = []
    for child in children:
        with contextlib.suppress(Exception):
            child.terminate()
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(keep: bool = False, log=print, *, attempts: int = 1, wait_quiet: float = 0.0,
            quiet_load: float = 0.5, busy_share: float | None = None, busy_windows: int = 2,
            command: str = "python -m bench.records.lab") -> dict:
    """Run the study once; with ``busy_share``, abandon an attempt during which other processes
    used more than that share of the cores (ContentionGuard) and start again from scratch after
    waiting for quiet, at most ``attempts`` times (the abandoned attempts are recorded)."""
    from maskad_core.study import edition, profiles
    from maskad_core.study import runner as study

    params = profiles.study_parameters(PROFILE)
    shown = f"MASKAD_HOME=<empty> maskad study --profile {PROFILE} --root <copy of the book's sources>"
    abandoned, waited = [], 0.0
    for attempt in range(1, attempts + 1):
        if wait_quiet:
            waited += wait_for_quiet(wait_quiet, quiet_load, log)
        workdir = Path(tempfile.mkdtemp(prefix="maskad-lab-"))
        root = study.stage_book_sources(workdir / "root", REPO)
        home = workdir / "home"
        home.mkdir()
        log_file = workdir / "study.log"
        study_command = [sys.executable, "-m", "maskad_core", "study", "--profile", PROFILE,
                         "--root", str(root)]
        env = {**os.environ, "MASKAD_HOME": str(home)}
        log(f"bench.records.lab: attempt {attempt}: {shown}\n  working folder {workdir}; log {log_file}")

        load_before = load_average()
        busy_before, own_before = machine_busy_seconds(), children_cpu_seconds()
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        start = time.perf_counter()
        with open(log_file, "w") as out:
            proc = subprocess.Popen(study_command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            guard = ContentionGuard(proc.pid, busy_share if busy_share is not None else 1.0,
                                    windows=busy_windows)
            stopped = False
            while proc.poll() is None:
                time.sleep(5)
                if guard.busy() and busy_share is not None and attempt < attempts:
                    stop_tree(proc)
                    stopped = True
                    break
        wall = time.perf_counter() - start
        if not stopped:
            break
        abandoned.append({"date": date, "after_minutes": round(wall / 60, 1),
                          "other_processes_cpu_share_per_minute": guard.shares})
        log(f"bench.records.lab: other processes used {guard.shares[-guard.windows:]} of the cores; "
            f"attempt {attempt} abandoned after {wall / 60:.1f} min")
        shutil.rmtree(workdir, ignore_errors=True)
    completed = proc
    busy_after, own_after = machine_busy_seconds(), children_cpu_seconds()
    load_after = load_average()
    text = log_file.read_text()

    others = None
    if busy_before is not None and busy_after is not None and wall > 0:
        others = round(max(0.0, (busy_after - busy_before) - (own_after - own_before))
                       / (wall * cores()), 3)
    edition_file = root / profiles.executed_dir(PROFILE) / edition.EDITION_FILE
    notebook_seconds = json.loads(edition_file.read_text())["seconds"] if edition_file.is_file() else {}
    book = re.search(r"book built in ([0-9.]+) s", text)
    # a failed build: the warnings it turned into errors (maskad_core.study.runner.build_book_html)
    build_failed = "the book build failed" in text
    build_problems = ([line.strip() for line in text.split("the book build failed", 1)[1].splitlines()[1:]
                       if "WARNING" in line or "ERROR" in line] if build_failed else [])

    # The two runs of the lesson, read from the fresh MASKAD_HOME the study trained them into.
    os.environ["MASKAD_HOME"] = str(home)
    main_config = profiles.train_config(params)
    random_config = profiles.train_config(params, masking="random")
    main, random = run_record(main_config), run_record(random_config)
    difference = (round(main["image_auroc"] - random["image_auroc"], 4)
                  if main.get("found") and random.get("found") else None)
    cpu = profiles.study_parameters("cpu")
    differs = {key: [params[key], cpu[key]] for key in params
               if key != "profile" and params[key] != cpu.get(key)}

    record = {
        "profile": PROFILE,
        "date": date,
        "command": command,
        "study_command": shown,
        "repository": {
            "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": git("status", "--porcelain", "--", "notebooks", "maskad_core",
                                       "book", "_toc.yml", "_config.yml").splitlines(),
            "note": "the notebooks and the package measured as they were in the working tree at the "
                    "date above, while they were being edited concurrently (uncommitted_changes)",
            "notebooks_fingerprint": edition.fingerprint(params, root / "notebooks")["notebooks"],
        },
        "machine": {
            "cpu": cpu_name(),
            "cores": cores(),
            "torch": metadata.version("torch"),
            "python": sys.version.split()[0],
            "load_avg_before": load_before,   # 1, 5, 15 minutes
            "load_avg_after": load_after,
            "other_processes_cpu_share": others,
            # CPU time the study itself used (all its processes): on a quiet machine with these
            # cores the wall time is at least this divided by the cores
            "study_cpu_minutes": round((own_after - own_before) / 60, 2),
            "other_processes_cpu_share_per_minute": guard.shares,
            "waited_for_quiet_minutes": waited,
            "abandoned_attempts": abandoned,
        },
        "settings": {"parameters": params, "differs_from_cpu": differs,
                     "main_config_equals_cpu": main_config == profiles.train_config(cpu)},
        "exit_code": completed.returncode,
        "notebooks_executed": len(notebook_seconds),
        "book_built": book is not None,
        "book_build_failed": build_failed,
        "book_build_problems": build_problems,
        "log_tail": text.strip().splitlines()[-15:] if completed.returncode else [],
        "minutes": {
            "whole_study": round(wall / 60, 2),
            "limit": LIMIT_MINUTES,
            "notebooks": {name: round(seconds / 60, 2) for name, seconds in notebook_seconds.items()},
            "book_build": round(float(book.group(1)) / 60, 2) if book else None,
            # the book build (successful or not) and the command's start-up: the rest of the time
            "outside_notebooks": round((wall - sum(notebook_seconds.values())) / 60, 2),
            "training_main": main.get("training_minutes"),
            "training_random": random.get("training_minutes"),
        },
        "main": main,
        "random": random,
        "difference": difference,
        "cpu_record": cpu_record(),
    }
    if keep:
        record["kept"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return record


def markdown(record: dict) -> str:
    m, machine, minutes = record["main"], record["machine"], record["minutes"]
    r = record["random"]
    if record["exit_code"] == 0:
        status = "the study completed and the book was built"
    elif record["book_build_failed"]:
        first = re.sub(r"^/\S*?/root/", "", record["book_build_problems"][0]) if record["book_build_problems"] else ""
        status = (f"all {record['notebooks_executed']} notebooks executed; the book build ran to its "
                  f"end and failed on {len(record['book_build_problems'])} warnings (the first: "
                  f"`` {first} ``)")
    else:
        status = f"the study exited with code {record['exit_code']}"
    notebooks = ", ".join(f"{name} {value:.1f}" for name, value in minutes["notebooks"].items())
    differs = "; ".join(f"{key} {value[0]} (cpu: {value[1]})"
                        for key, value in record["settings"]["differs_from_cpu"].items())
    load_b, load_a = machine["load_avg_before"], machine["load_avg_after"]
    lines = [
        f"Profile `lab`, measured {record['date']}: `{record['command']}`, which runs "
        f"`{record['study_command']}` from an empty run cache; {status}.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}; load average "
        f"(1, 5, 15 min) {load_b[0]}, {load_b[1]}, {load_b[2]} before and {load_a[0]}, {load_a[1]}, "
        f"{load_a[2]} after; other processes used {machine['other_processes_cpu_share']} of the CPU "
        "meanwhile.",
        "",
        f"Settings: the cpu profile's (main model identical: "
        f"{record['settings']['main_config_equals_cpu']}) except {differs}.",
        "",
        f"Code: commit {record['repository']['commit']}, {record['repository']['note']}.",
        "",
        "| what | minutes |",
        "|---|---|",
        f"| whole study (`maskad study --profile lab`, book included) | {minutes['whole_study']:.1f} |",
        f"| limit (a class period) | {minutes['limit']:.0f} |",
        f"| training: main model (complementary masking) | {minutes['training_main']} |",
        f"| training: random-mask baseline | {minutes['training_random']} |",
        f"| book build and start-up (the rest) | {minutes['outside_notebooks']} |",
        "",
        f"Notebooks (minutes, training included): {notebooks}.",
        "",
        "| run (seed 0) | masking | run id | mean image AUROC |",
        "|---|---|---|---|",
        f"| main model | {m['masking']} | {m['run']} | {m.get('image_auroc')} |",
        f"| random-mask baseline | {r['masking']} | {r['run']} | {r.get('image_auroc')} |",
        f"| difference | | | {record['difference']} |",
        "",
        f"Score: {m.get('headline_score')}. One seed: the difference is to be read against the cpu "
        "profile's record over three seeds (bench/results/quality.md), whose main model is this one.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES",
                        help="first wait, at most this long, for the 1-minute load average to fall "
                             "below --quiet-load")
    parser.add_argument("--quiet-load", type=float, default=0.5, help="(default 0.5)")
    parser.add_argument("--busy-share", type=float, default=None, metavar="SHARE",
                        help="abandon an attempt (and start again, fresh) when other processes use "
                             "more than this share of the cores for --busy-minutes minutes running")
    parser.add_argument("--busy-minutes", type=int, default=2, help="(default 2)")
    parser.add_argument("--attempts", type=int, default=1, help="at most this many attempts "
                        "(the last one always runs to its end)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="only write results/lab.md again from results/lab.json")
    args = parser.parse_args(argv)
    if args.markdown_only:
        (RESULTS / "lab.md").write_text(markdown(json.loads((RESULTS / "lab.json").read_text())))
        return 0
    record = measure(keep=args.keep, attempts=args.attempts, wait_quiet=args.wait_quiet,
                     quiet_load=args.quiet_load, busy_share=args.busy_share,
                     busy_windows=args.busy_minutes,
                     command=" ".join(["python -m bench.records.lab", *(argv if argv is not None else sys.argv[1:])]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lab.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (RESULTS / "lab.md").write_text(markdown(record))
    print(markdown(record))
    return 0 if record["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
