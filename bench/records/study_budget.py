"""``python -m bench.records.study_budget``: the real profile's whole study timed from an empty run cache.

    python -m bench.records.study_budget                 # -> bench/results/study_budget.{json,md}
    python -m bench.records.study_budget --keep-runs     # then copy the new runs into this machine's cache

Runs ``maskad study --profile real`` on a copy of the book's sources (and of the committed edition of
the generated set, as a clone has it) with ``MASKAD_HOME`` pointing at
an empty folder (every training run and Table 2 cell made from scratch; the real data read where the
profile says), times it, and reads every run it trained: minutes of training, epochs, masking, seed,
control. The limits it checks are issue 19's: the main model within 20 minutes of training and the
whole study within 60 minutes on this machine. The machine, its load before and after and the share
of the CPU other processes took meanwhile are recorded with the minutes. With ``--keep-runs`` the
new run folders are copied into this process's run cache (``maskad_core.data.paths.runs_dir()``), so
that the committed edition is then regenerated from exactly these runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from bench.records.lab import (
    REPO,
    ContentionGuard,
    children_cpu_seconds,
    cores,
    git,
    load_average,
    machine_busy_seconds,
)
from maskad_core.training.runtime import cpu_name

RESULTS = Path(__file__).resolve().parents[1] / "results"
PROFILE = "real"
LIMITS = {"main_model_training": 20.0, "whole_study": 60.0}  # minutes, issue 19 item 7


def trained_runs(runs_dir: Path) -> list[dict]:
    """Every finished run under ``runs_dir``: id, masking, seed, control, epochs, training minutes."""
    out = []
    for path in sorted(runs_dir.glob("*/metrics.json")):
        metrics = json.loads(path.read_text())
        config = metrics["config"]
        out.append({"run": path.parent.name, "masking": config["masking"], "seed": config["seed"],
                    "control": config["image_standardization"], "epochs": config["epochs"],
                    "depths": f"E{config['depth']}D{config['decoder_depth']}",
                    "mask_ratio": config["mask_ratio"],
                    "training_minutes": round(metrics["training"]["wall_time_s"] / 60, 2),
                    "image_auroc": round(float(metrics["image_auroc"]), 4)})
    return out


def measure(keep_runs: bool, command: str) -> dict:
    from maskad_core.data import paths
    from maskad_core.study import edition, profiles
    from maskad_core.study import runner as study

    params = profiles.study_parameters(PROFILE)
    main_config = profiles.train_config(params)
    workdir = Path(tempfile.mkdtemp(prefix="maskad-study-budget-"))
    root = study.stage_book_sources(workdir / "root", REPO)
    # a clone holds the other edition too (the generated set's): the book's lab part is built from it
    other = REPO / profiles.executed_dir("cpu")
    if other.is_dir():
        shutil.copytree(other, root / profiles.executed_dir("cpu"), dirs_exist_ok=True)
    home = workdir / "home"
    home.mkdir()
    log_file = workdir / "study.log"
    env = {**os.environ, "MASKAD_HOME": str(home)}
    print(f"bench.records.study_budget: maskad study --profile {PROFILE} in {workdir}; log {log_file}", flush=True)
    load_before = load_average()
    busy_before, own_before = machine_busy_seconds(), children_cpu_seconds()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    start = time.perf_counter()
    with open(log_file, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "maskad_core", "study", "--profile", PROFILE,
                                 "--root", str(root)], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        guard = ContentionGuard(proc.pid, 1.0)
        while proc.poll() is None:
            time.sleep(5)
            guard.busy()  # records the share other processes took, minute by minute
    wall = time.perf_counter() - start
    busy_after, own_after = machine_busy_seconds(), children_cpu_seconds()
    text = log_file.read_text()
    others = None
    if busy_before is not None and busy_after is not None and wall > 0:
        others = round(max(0.0, (busy_after - busy_before) - (own_after - own_before)) / (wall * cores()), 3)
    edition_file = root / profiles.executed_dir(PROFILE) / edition.EDITION_FILE
    notebook_seconds = json.loads(edition_file.read_text())["seconds"] if edition_file.is_file() else {}
    book = re.search(r"book built in ([0-9.]+) s", text)

    runs = trained_runs(home / "runs")
    from maskad_core.training.runs import run_path

    caller_home = os.environ.get("MASKAD_HOME")
    os.environ["MASKAD_HOME"] = str(home)  # the main run's id as the study named it there
    try:
        main_id = run_path(main_config).name
    finally:  # the caller's own run cache again (where --keep-runs copies to)
        if caller_home is None:
            os.environ.pop("MASKAD_HOME")
        else:
            os.environ["MASKAD_HOME"] = caller_home
    main_minutes = max((r["training_minutes"] for r in runs if r["run"] == main_id), default=None)
    copied = []
    if keep_runs:
        target = paths.runs_dir()
        target.mkdir(parents=True, exist_ok=True)
        for run in runs:
            if not (target / run["run"]).exists():
                shutil.copytree(home / "runs" / run["run"], target / run["run"], symlinks=True)
                copied.append(run["run"])
    import torch

    record = {
        "profile": PROFILE, "date": date, "command": command,
        "study_command": f"MASKAD_HOME=<empty> maskad study --profile {PROFILE} --root <copy of the book's sources>",
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": git("status", "--porcelain", "--", "notebooks", "maskad_core").splitlines(),
        "machine": {"cpu": cpu_name(), "cores": cores(), "torch": metadata.version("torch"),
                    "torch_threads": torch.get_num_threads(), "load_avg_before": load_before,
                    "load_avg_after": load_average(), "other_processes_cpu_share": others,
                    "other_processes_cpu_share_per_minute": guard.shares,
                    "study_cpu_minutes": round((own_after - own_before) / 60, 2)},
        "settings": {key: params[key] for key in ("categories", "image_size", "embed_dim", "epochs",
                                                  "warmup_epochs", "seeds", "control_seeds",
                                                  "ablation_depths", "ablation_ratios", "ablation_epochs")},
        "exit_code": proc.returncode,
        "book_built": book is not None,
        "log_tail": text.strip().splitlines()[-15:] if proc.returncode else [],
        "minutes": {
            "whole_study": round(wall / 60, 2),
            "notebooks": {name: round(seconds / 60, 2) for name, seconds in notebook_seconds.items()},
            "training_all_runs": round(sum(r["training_minutes"] for r in runs), 2),
            "main_model_training": main_minutes,
        },
        "limits": LIMITS,
        "within_limits": {"main_model_training": main_minutes is not None and main_minutes <= LIMITS["main_model_training"],
                          "whole_study": proc.returncode == 0 and wall / 60 <= LIMITS["whole_study"]},
        "main_run": main_id,
        "runs": runs,
        "copied_into_cache": copied,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    return record


def markdown(record: dict) -> str:
    m, minutes, s = record["machine"], record["minutes"], record["settings"]
    notebooks = ", ".join(f"{name} {value:.1f}" for name, value in minutes["notebooks"].items())
    status = "the study completed and the book was built" if record["exit_code"] == 0 else (
        f"the study exited with code {record['exit_code']}")
    lines = [
        f"`{record['command']}` on {record['date']} (commit {record['commit']}): "
        f"`{record['study_command']}`; {status}.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); "
        f"load average (1, 5, 15 min) {', '.join(map(str, m['load_avg_before']))} before and "
        f"{', '.join(map(str, m['load_avg_after']))} after; other processes used "
        f"{m['other_processes_cpu_share']} of the CPU meanwhile.",
        "",
        f"Settings: {', '.join(s['categories'])} at {s['image_size']} px, encoder {s['embed_dim']} wide, "
        f"{s['epochs']} epochs (warm-up {s['warmup_epochs']}), seeds {s['seeds']}, control seeds "
        f"{s['control_seeds']}, Table 2 cells {s['ablation_depths']} x {s['ablation_ratios']} of "
        f"{s['ablation_epochs']} epochs.",
        "",
        "| what | minutes | limit | within |",
        "|---|---|---|---|",
        f"| whole study, book included | {minutes['whole_study']:.1f} | {record['limits']['whole_study']:.0f} | "
        f"{'yes' if record['within_limits']['whole_study'] else 'no'} |",
        f"| main model's training | {minutes['main_model_training']} | "
        f"{record['limits']['main_model_training']:.0f} | "
        f"{'yes' if record['within_limits']['main_model_training'] else 'no'} |",
        f"| training, all {len(record['runs'])} runs | {minutes['training_all_runs']:.1f} | | |",
        "",
        f"Notebooks (minutes, training included): {notebooks}.",
        "",
        "| run | masking | seed | control | cell | epochs | training minutes | mean image AUROC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in record["runs"]:
        lines.append(f"| {run['run']} | {run['masking']} | {run['seed']} | {run['control']} | "
                     f"{run['depths']} r {run['mask_ratio']} | {run['epochs']} | {run['training_minutes']} | "
                     f"{run['image_auroc']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.study_budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-runs", action="store_true",
                        help="copy the runs it trained into this machine's run cache")
    parser.add_argument("--markdown-only", action="store_true",
                        help="only write results/study_budget.md again from its .json")
    args = parser.parse_args(argv)
    if args.markdown_only:
        (RESULTS / "study_budget.md").write_text(markdown(json.loads((RESULTS / "study_budget.json").read_text())))
        return 0
    record = measure(args.keep_runs, " ".join(["python -m bench.records.study_budget",
                                               *(argv if argv is not None else sys.argv[1:])]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "study_budget.json").write_text(json.dumps(record, indent=1) + "\n")
    (RESULTS / "study_budget.md").write_text(markdown(record))
    print(markdown(record))
    return 0 if record["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
