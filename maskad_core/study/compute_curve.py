"""What each step of compute buys: the records of ``python -m bench.records.curve`` read for the book.

A curve record holds one long run of a profile's model (one training masking, one seed) scored at
each kept snapshot. This module loads the records, says per category what the curve shows by a
stated rule (``budget_rule.curve_shape``: the change over its last three points against 0.01),
the first snapshot at which the default score clears the best training-free floor (above its
AUROC; one seed, so without an interval: a description, not a verdict), and the gap to the paper at
the longest budget reached. The curve is reported, never used to choose.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from maskad_core.study import paper
from maskad_core.study.budget_rule import curve_shape, learned_budget

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"
MASKINGS = ("complementary", "random")


def load_curves(profile: str = "real", seed: int = 0, directory: str | Path | None = None) -> dict:
    """{training masking: record} of the curve records present (none: an empty dict)."""
    directory = Path(directory or RESULTS_DIR)
    found = {}
    for masking in MASKINGS:
        path = directory / f"curve-{profile}-{masking}-seed{seed}.json"
        if path.is_file():
            found[masking] = json.loads(path.read_text())
    return found


# The floors of evaluation.detectors (FLOOR_METHODS; a test keeps them equal): detectors of defects.
# The probes (brightness, contrast, mean_colour) see only global statistics: a probe that separates a
# test split shows a confound (screw), not a bar a detector should clear.
FLOORS = ("gaussian", "nn", "patch_nn")


def best_detector(record: dict, category: str) -> tuple[str, float] | None:
    """(method, image AUROC) of the best training-free floor on ``category``, or None."""
    scored = {m: rows[category]["auroc"] for m, rows in record.get("detectors", {}).items()
              if m in FLOORS and rows.get(category, {}).get("auroc") is not None}
    if not scored:
        return None
    method = max(scored, key=scored.get)
    return method, scored[method]


def curve_summary(record: dict) -> pd.DataFrame:
    """Per category: the default score at the first and the last snapshot, the curve's shape, the
    first epoch above the best training-free floor (or "not within the run"), that floor, the
    strongest confound probe, and the gap to the paper's Table 1 at the last snapshot (MVTec AD)."""
    table1 = paper.table1()["paper"]
    points = record["points"]
    rows = []
    for category in record["data"]["categories"]:
        curve = [(p["epoch"], p["per_category"][category]["default"]) for p in points]
        best = best_detector(record, category)
        cleared = ("–" if best is None else
                   next((str(e) for e, v in curve if v is not None and v > best[1]), "not within the run"))
        last = curve[-1][1]
        probes = {m: rows_[category]["auroc"] for m, rows_ in record.get("detectors", {}).items()
                  if m not in FLOORS and rows_.get(category, {}).get("auroc") is not None}
        strongest = max(probes, key=probes.get) if probes else None
        rows.append({
            "category": category,
            "first snapshot": curve[0][1], "last snapshot": last,
            "shape": curve_shape(curve),
            "first epoch above the best floor": cleared,
            "best floor": "–" if best is None else f"{best[0]} {best[1]:.3f}",
            "strongest probe": "–" if strongest is None else f"{strongest} {probes[strongest]:.3f}",
            "paper (Table 1)": float(table1[category]) if category in table1.index else None,
            "gap to the paper": (round(last - float(table1[category]), 3)
                                 if category in table1.index and last is not None else None),
        })
    return pd.DataFrame(rows).set_index("category")


def budget_statement(records: dict) -> str:
    """The headline budget's rule on the held-out errors of the records (one per masking)."""
    curves = {masking: [(p["epoch"], p["held_out_error"]["mean"]) for p in record["points"]]
              for masking, record in records.items() if record["points"]}
    if not curves:
        return "no snapshot has been scored yet"
    result = learned_budget(curves)
    reached = min(r["points"][-1]["epoch"] for r in records.values() if r["points"])
    planned = max(r["epochs"] for r in records.values())
    status = (f"the runs reached epoch {reached} of their {planned}" if reached < planned
              else f"the runs finished their {planned} epochs")
    verdict = (f"{result['epochs']} epochs" if result["settled"]
               else f"no budget yet: the held-out error was still falling at epoch {result['final_epoch']}")
    used = " and ".join(f"{m} masking" for m in curves)
    return (f"{result['rule']} gives {verdict} ({status}; curves: {used}, one seed each, where the "
            "rule asks for two seeds of the main model)")
