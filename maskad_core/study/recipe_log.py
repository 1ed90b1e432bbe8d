"""The recipe log: how each default of the training and scoring recipe was chosen.

``recipe_log.yaml`` (beside this file) lists the decisions: the setting, the value chosen, the
alternatives that were measured, the data they were measured on, and why. It holds no numbers:
each decision names the measurements it rests on (a study file of ``bench.records.recipe`` and the variants
or scoring rows to compare), and :func:`decision_table` reads the numbers from those files, so
every number the book shows about the recipe comes from a measurement.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from maskad_core.evaluation.detectors import PROBE_METHODS
from maskad_core.study.comparison import format_interval

MEASUREMENTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results" / "recipe"

# The scoring row a training comparison reads, unless a decision names another.
DEFAULT_SCORING = {"test_partitions": 1, "anomaly_map": "l2", "smooth_sigma": 0.0,
                   "reduction": "mean", "map_standardization": "none"}


def load_log() -> dict:
    """The parsed recipe_log.yaml: {"tuning_data": ..., "decisions": [...]}."""
    return yaml.safe_load(resources.files("maskad_core.study").joinpath("recipe_log.yaml").read_text())


def chosen_defaults(log: dict | None = None) -> dict:
    """{setting: chosen value} for every decision of the log (what TrainConfig's defaults must be)."""
    log = log or load_log()
    return {d["setting"]: d["chosen"] for d in log["decisions"] if d.get("default", True)}


def load_measurements(study: str, directory: str | Path | None = None) -> pd.DataFrame:
    """One row per (training variant, scoring variant) of a ``bench.records.recipe`` study file."""
    path = Path(directory or MEASUREMENTS_DIR) / f"{study}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no recipe measurements {path}; run python -m bench.records.recipe "
                                f"--study {study}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    # rows measured before maps could be standardised per pixel used the map as it is
    return pd.DataFrame([{"map_standardization": "none", **row} for row in rows])


def _select(frame: pd.DataFrame, where: dict) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    for key, value in where.items():
        keep &= frame[key] == value
    return frame[keep]


def decision_rows(decision: dict, frame: pd.DataFrame) -> list[dict]:
    """The measured alternatives of one decision: [{option, image_auroc, pixel_auroc, ...}].

    A training decision compares ``variants`` under one scoring (``scoring``, default eq. 1);
    a scoring decision compares scoring rows (``options``: a list of scoring dicts) of one
    ``variant``. The last row measured for each option wins (a study file only grows).
    """
    rows = []
    if "variants" in decision:
        scoring = {**DEFAULT_SCORING, **decision.get("scoring", {})}
        for label, variant in decision["variants"].items():
            found = _select(frame, {"variant": variant, **scoring})
            rows.append(_row(label, found))
    else:
        for label, scoring in decision["options"].items():
            found = _select(frame, {"variant": decision["variant"], "map_standardization": "none",
                                    **scoring})
            rows.append(_row(label, found))
    return rows


def _row(label: str, found: pd.DataFrame) -> dict:
    if found.empty:
        return {"option": label, "image_auroc": float("nan"), "pixel_auroc": float("nan"),
                "train_seconds": float("nan"), "measured": False}
    last = found.iloc[-1]
    return {"option": label, "image_auroc": float(last["image_auroc"]),
            "pixel_auroc": float(last["pixel_auroc"]), "train_seconds": float(last["train_seconds"]),
            "measured": True}


def decision_table(log: dict | None = None, directory: str | Path | None = None) -> pd.DataFrame:
    """Every decision with every measured alternative: one row per (decision, option)."""
    log = log or load_log()
    frames: dict[str, pd.DataFrame] = {}
    out = []
    for decision in log["decisions"]:
        study = decision["study"]
        if study not in frames:
            frames[study] = load_measurements(study, directory)
        for row in decision_rows(decision, frames[study]):
            out.append({"setting": decision["setting"], "chosen": str(decision["chosen"]),
                        "data": study, **row, "is_chosen": row["option"] == decision["chosen_option"]})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- the quality record
QUALITY_FILE = MEASUREMENTS_DIR.parent / "quality.json"


def load_quality(path: str | Path | None = None) -> dict | None:
    """The record of ``python -m bench.records.quality`` (bench/results/quality.json), or None if absent."""
    path = Path(path or QUALITY_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def quality_table(profile: dict) -> pd.DataFrame:
    """One profile of the quality record as a table: per category the default score with its
    interval (mean over seeds when several), eq. 1, the same model with its map not standardised
    (NaN in records made before that was measured), the random-mask baseline, pixel AUROC and the
    training-free floor."""
    seeds = list(profile["seeds"].values())
    first = seeds[0]
    rows = {}
    for category in first["complementary"]:
        def mean(kind, key, category=category):
            return float(sum(s[kind][category][key] for s in seeds) / len(seeds))

        row = {"default score": mean("complementary", "auroc"),
               "95% interval": format_interval(first["complementary"][category].get("ci")),
               "eq. 1": mean("complementary", "eq1"),
               "map not standardised": (mean("unstandardized", "auroc")
                                        if all("unstandardized" in s for s in seeds)
                                        else float("nan")),
               "random mask": mean("random", "auroc"),
               "random: 95% interval": format_interval(first["random"][category].get("ci")),
               "pixel AUROC": first["complementary"][category]["pixel_auroc"]}
        for method, floor in profile["floor"].items():
            kind = "probe" if method in PROBE_METHODS else "floor"  # confound probes: no map
            row[f"{kind}: {method}"] = (floor["mean"] if category == "mean"
                                        else floor["per_category"][category])
        rows[category] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "category"
    return frame


def masking_2x2(profile: dict) -> pd.DataFrame:
    """Mean image AUROC (default score) of the first seed: rows trained with, columns tested with."""
    crossed = next(iter(profile["seeds"].values()))["test_masking_2x2"]
    frame = pd.DataFrame({trained: {tested: row[tested] for tested in ("complementary", "random")}
                          for trained, row in crossed.items()}).T
    frame.index.name, frame.columns.name = "trained with", "tested with"
    return frame


def training_curve(profile: dict) -> pd.DataFrame:
    """AUROC of the kept weight snapshots against training minutes (first seed)."""
    return pd.DataFrame(next(iter(profile["seeds"].values()))["curve"])


def measured_line(profile: dict) -> str:
    """When, with what command, on what machine and under what load a profile was measured."""
    machine = profile["machine"]
    return (f"Profile {profile['profile']}: measured {profile['date']} with `{profile['command']}` "
            f"on {machine['cpu']} ({machine['cores']} cores, {machine['threads']} torch threads); "
            f"load {profile['load_before']:.1f} before, {profile['load_after']:.1f} after.")


def _without_paths(text: str) -> str:
    """A recorded provenance line without the folders it names ("MVTec AD at /data/x (2 of ...)"):
    the records keep them, the book names data sets, not the building machine's paths."""
    return re.sub(r" at (?:/|~)[^\s;,():]*", "", text)


def provenance(quality: dict | None, profile: str) -> str:
    """One line for the chapter that shows recorded measurements instead of its profile's runs."""
    parts = ["recorded measurements, not runs of this book's profile",
             "recipe search: bench/results/recipe/gen-val*.jsonl on the generated set drawn with "
             "seed 1 (synthetic, not MVTec AD), 64 px"]
    if quality is not None:
        parts += [f"quality benchmark, profile {p['profile']}: measured {p['date']} on "
                  f"{p['machine']['cpu']} ({p['machine']['cores']} cores, {p['machine']['threads']} "
                  f"torch threads); {_without_paths(p['provenance'])}" for p in quality["profiles"]
                  if "provenance" in p]
    parts.append(f"profile {profile!r}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- training x test masking
MASKINGS_2X2 = ("complementary", "random")


def masking_2x2_stats(profile: dict) -> dict:
    """{(trained, tested): (mean, std over seeds, n seeds)} of the mean image AUROC (default score)
    of a quality-record section: the real-data section's ``two_by_two`` (means and standard
    deviations over its seeds) or a generated-set section's per-seed ``test_masking_2x2``."""
    import numpy as np

    out = {}
    if "two_by_two" in profile:
        seeds = len(next(iter(profile.get("arms", {}).values()), {}).get("seeds", [])) or 1
        for trained, row in profile["two_by_two"].items():
            for tested in MASKINGS_2X2:
                out[(trained, tested)] = (float(row[tested]), float(row.get(f"{tested}_std", 0.0)),
                                          seeds)
        return out
    per_seed = [s["test_masking_2x2"] for s in profile["seeds"].values() if "test_masking_2x2" in s]
    for trained in MASKINGS_2X2:
        for tested in MASKINGS_2X2:
            values = np.array([s[trained][tested] for s in per_seed], dtype=float)
            out[(trained, tested)] = (float(values.mean()),
                                      float(values.std(ddof=1)) if values.size > 1 else 0.0,
                                      int(values.size))
    return out


def masking_2x2_frame(stats: dict) -> pd.DataFrame:
    """The 2x2 as text for a page: rows trained with, columns tested with, 'mean ± std' (3 decimals;
    the mean alone where one seed)."""
    rows = {}
    for (trained, tested), (mean, std, seeds) in stats.items():
        rows.setdefault(f"trained with {trained}", {})[f"tested with {tested}"] = (
            f"{mean:.3f} ± {std:.3f}" if seeds > 1 else f"{mean:.3f}")
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "mean image AUROC"
    return frame


def _stats_verdict(first: tuple, second: tuple) -> str:
    """comparison.SPREAD_RULE applied to (mean, std, seeds) pairs: 'higher', 'lower' or 'level'."""
    (a, a_std, _), (b, b_std, _) = first, second
    if a - a_std > b + b_std:
        return "higher"
    if a + a_std < b - b_std:
        return "lower"
    return "level"


def masking_2x2_sentence(stats: dict, data: str) -> str:
    """What a 2x2 shows, in words: for each trained model, the change from testing with random to
    testing with complementary views, and (where several seeds exist) whether it is beyond the seed
    spread (comparison.SPREAD_RULE)."""
    parts = []
    seeds = max(s for _, _, s in stats.values())
    for trained in MASKINGS_2X2:
        comp, rand = stats[(trained, "complementary")], stats[(trained, "random")]
        difference = comp[0] - rand[0]
        text = (f"for the model trained with {trained} masking, testing with complementary views "
                f"instead of random ones changes the mean image AUROC by {difference:+.3f} "
                f"({comp[0]:.3f} against {rand[0]:.3f})")
        if seeds > 1:
            verdict = _stats_verdict(comp, rand)
            text += (", beyond the spread of its " + str(comp[2]) + " seeds" if verdict != "level"
                     else ", within the spread of its " + str(comp[2]) + " seeds")
        parts.append(text)
    same = stats[("complementary", "complementary")][0] - stats[("random", "complementary")][0]
    sentence = (f"On {data}, " + "; ".join(parts) + ". Tested the same way (complementary views), "
                f"the two trained models differ by {same:+.3f} (complementary-trained minus "
                f"random-trained).")
    return sentence[0].upper() + sentence[1:]


def real_arms_frame(profile: dict) -> pd.DataFrame:
    """The real-data section of the quality record as text for a page: per category, the default
    score of each arm (training masking | image standardisation control) as 'mean ± std' over its
    seeds, and eq. 1 of the main arm."""
    arms = profile["arms"]
    categories = list(next(iter(arms.values()))["per_category"])
    rows = {}
    for category in categories:
        row = {}
        for key, arm in arms.items():
            masking, control = key.split("|")
            label = f"{masking} masking" + ("" if control == "none" else f", {control} control")
            entry = arm["per_category"][category]["auroc"]
            row[label] = f"{entry['mean']:.3f} ± {entry['std']:.3f}"
        main = arms.get("complementary|none")
        if main is not None:
            eq1 = main["per_category"][category]["eq1"]
            row["complementary masking, eq. 1"] = f"{eq1['mean']:.3f} ± {eq1['std']:.3f}"
        rows[category] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "category"
    return frame


def real_description(profile: dict) -> str:
    """What the real-data section measured, in one line (data, size, budget, seeds, machine)."""
    config, machine = profile["config"], profile["machine"]
    seeds = next(iter(profile["arms"].values()))["seeds"]
    return (f"{', '.join(config['categories'])} at {config['image_size']} px, {config['epochs']} "
            f"epochs, training seeds {', '.join(map(str, seeds))}; measured {profile['date']} with "
            f"`{profile['command']}` on {machine['cpu']} ({machine['cores']} cores)")
