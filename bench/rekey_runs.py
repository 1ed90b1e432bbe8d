"""Re-key saved runs whose data fingerprint changed without their data changing.

Run ids cover a fingerprint of the data (``splits.data_fingerprint``). Until 2026-12-01 it listed
file names, sizes and modification times, so a copy of the same images (a fresh machine, another
disk) gave every run a new id and the saved runs were retrained. The fingerprint now hashes the
images' bytes; this tool moves each saved run to the id the current fingerprint gives, but only
after checking that the data are the ones it was trained and tested on: it refits the map
statistics on the current training images, re-scores the current test split with the saved weights,
and requires every per-image score to match the saved ``scores.csv``. A run that does not match is
left where it is (it will be retrained).

    python -m bench.rekey_runs            # report what would move
    python -m bench.rekey_runs --apply    # move the verified runs
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from maskad_core.paths import runs_dir
from maskad_core.run_record import evaluate_run
from maskad_core.runs import Run, run_id, write_data_record
from maskad_core.splits import data_fingerprint

TOLERANCE = 1e-5  # per-image scores, relative: the same weights on the same bytes


def same_scores(saved, fresh) -> bool:
    """True when both frames score the same images with the same values (every score column)."""
    saved, fresh = (f.sort_values("path").reset_index(drop=True) for f in (saved, fresh))
    if len(saved) != len(fresh) or not saved["path"].equals(fresh["path"]):
        return False
    columns = [c for c in saved.columns if c.startswith("score_") and c in fresh.columns]
    return bool(columns) and all(
        np.allclose(saved[c].to_numpy(float), fresh[c].to_numpy(float), rtol=TOLERANCE, atol=1e-8,
                    equal_nan=True) for c in columns)


def rekey(apply: bool) -> list[dict]:
    moves = []
    for path in sorted(p for p in runs_dir().iterdir() if p.is_dir()):
        run = Run(path)
        if not run.done:
            continue
        try:
            fingerprint = data_fingerprint(run.config)
        except Exception as error:  # data gone: nothing to check against
            moves.append({"run": run.id, "status": f"data not readable: {error}"})
            continue
        new_id = run_id(run.config, fingerprint)
        if new_id == run.id:
            continue
        target = runs_dir() / new_id
        if target.exists():
            moves.append({"run": run.id, "new": new_id, "status": "target exists: left"})
            continue
        _, fresh = evaluate_run(run, refit_statistics=True)
        if not same_scores(run.scores, fresh):
            moves.append({"run": run.id, "new": new_id, "status": "scores differ: left"})
            continue
        status = "verified"
        if apply:
            path.rename(target)
            write_data_record(target, fingerprint)
            metrics = json.loads((target / "metrics.json").read_text())
            metrics["run"], metrics["rekeyed_from"] = new_id, run.id
            (target / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            status = "moved"
        moves.append({"run": run.id, "new": new_id, "status": status})
        print(f"{run.id} -> {new_id}: {status}", flush=True)
    return moves


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apply", action="store_true", help="move the verified runs")
    moves = rekey(parser.parse_args(argv).apply)
    for move in moves:
        if move["status"] not in ("verified", "moved"):
            print(f"{move['run']}: {move['status']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())



