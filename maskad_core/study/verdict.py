"""The verdict a reader can repeat: each claim of the paper, "reproduced", "not reproduced" or "not
testable here", with the reason (budget, data, score or interval), computed from the records.

Torch-free (the book's extension imports it): it reads the evidence record's real-data section
(bench/results/quality.json, ``bench.records.evidence``), the 2x2's paired intervals where recorded
(``two_by_two_paired``, in that section or in bench/results/masking_2x2.json), the control's residue
(bench/results/control_residue.json) and the paper's own numbers (``study.paper``). A word about a
difference needs the interval of that difference to exclude zero (and, over seeds, the seed
spread to separate too: ``comparison.SEEDS_RULE``); :data:`VERDICT_RULE` says the rest once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from maskad_core.study import paper
from maskad_core.study.comparison import difference_verdict, seeds_verdict

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced", "not testable here"
VERDICT_RULE = (
    "a number of the paper is reproduced when the rule does not place this study's measurement below "
    "it (seed spread and 95% interval; the paper's score, eq. 1, decides, the study's default score is "
    "said beside it); not reproduced when the rule places it below; a claim about a difference is "
    "reproduced only when the 95% interval of the paired difference excludes zero on the claimed "
    "side (and the seed spread separates the two), not reproduced otherwise; not testable here when "
    "the data, the budget or the records cannot decide it")
RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench" / "results"
MASKINGS = ("complementary", "random")
NAMES = {"bottle": "bottle", "screw": "screw", "transistor": "transistor", "kolektor_sdd": "KolektorSDD"}


@dataclasses.dataclass(frozen=True)
class Verdict:
    claim: str  # the paper's claim, in words
    verdict: str  # REPRODUCED, NOT_REPRODUCED or NOT_TESTABLE
    reason: str  # "budget", "data", "score" or "interval"
    because: str  # the measurement, in words

    def line(self) -> str:
        return f"**{self.verdict}** ({self.reason}): {self.claim}. {self.because}"


def _name(category: str) -> str:
    return NAMES.get(category, category.replace("_", " "))


def _seed_text(entry: dict) -> str:
    low, high = entry["ci"]
    return f"{entry['mean']:.3f} ± {entry['std']:.3f} [{low:.3f}, {high:.3f}]"


def real_section(quality: dict | None) -> dict | None:
    """The real-data section of a quality record, or None."""
    return next((p for p in (quality or {}).get("profiles", []) if p.get("kind") == "real"), None)


def _best_detector(section: dict, category: str, control: str = "none") -> tuple[str, dict] | None:
    found = {d["method"]: d["per_category"][category] for d in section.get("detectors", {}).values()
             if d["control"] == control and category in d["per_category"]
             and d["method"] not in ("brightness", "contrast", "mean_colour")}  # probes, not detectors
    if not found:
        return None
    method = max(found, key=lambda m: found[m]["auroc"])
    return method, found[method]


def _probe(section: dict, method: str, category: str, control: str = "none") -> dict | None:
    entry = section.get("detectors", {}).get(f"{method}|{control}", {})
    return entry.get("per_category", {}).get(category)


def budget_words(section: dict, train_images: int | None = None, lpips: bool | None = None) -> str:
    """The budget in words, against the paper's: epochs, training minutes, images seen."""
    setting = paper.setting()
    epochs = section["config"]["epochs"]
    minutes = max(section["arms"]["complementary|none"]["train_minutes"])
    paper_seen = setting["epochs"] * setting["train_images"]
    text = (f"{epochs} epochs, at most {minutes:.1f} minutes of training per model on "
            f"{section['machine']['cores']} CPU cores, {section['config']['image_size']}-pixel images")
    if train_images:
        seen = epochs * train_images
        text += (f", {seen:,} training images seen ({train_images:,} images × {epochs}), "
                 f"{seen / paper_seen:.2%} of the paper's {setting['epochs']:,} epochs × "
                 f"{setting['train_images']:,} images ≈ {paper_seen / 1e6:.1f} million")
    else:
        text += (f", against the paper's {setting['epochs']:,} epochs × {setting['train_images']:,} "
                 f"images ≈ {paper_seen / 1e6:.1f} million images seen")
    if lpips is False:
        text += "; without the LPIPS term of the loss (its AlexNet weights were not available)"
    return text


def table1_verdict(section: dict, category: str, residue: dict | None = None) -> Verdict:
    """One Table 1 number of the paper against the record: eq. 1 decides, the default score beside."""
    printed = float(paper.table1().loc[category, "paper"])
    claim = f"{_name(category)}: image AUROC {printed:.3f} (Table 1)"
    entry = section["arms"]["complementary|none"]["per_category"].get(category)
    if entry is None:
        return Verdict(claim, NOT_TESTABLE, "data",
                       f"{_name(category)} is not in the evidence record yet (measured on "
                       f"{', '.join(_name(c) for c in section['arms']['complementary|none']['per_category'])})")
    epochs = section["config"]["epochs"]
    eq1, default = entry["eq1"], entry["auroc"]
    by_eq1 = seeds_verdict(eq1["seeds"], eq1["ci"], printed, [printed, printed])
    by_default = seeds_verdict(default["seeds"], default["ci"], printed, [printed, printed])
    if by_eq1 in ("level", "higher"):
        verdict, reason, level = REPRODUCED, "score", "level with or above the paper's"
    elif by_default in ("level", "higher"):
        verdict, reason, level = NOT_REPRODUCED, "score", "eq. 1 below the paper's, the default score not"
    else:
        verdict, reason, level = (NOT_REPRODUCED, "budget",
                                  f"both below the paper's, which trains {paper.setting()['epochs']:,} epochs")
    because = (f"After {epochs} epochs: {_seed_text(eq1)} with eq. 1 and {_seed_text(default)} with the "
               f"study's default score, {level}")
    best = _best_detector(section, category)
    if best is not None:
        method, detector = best
        against = seeds_verdict(default["seeds"], default["ci"], detector["auroc"], detector["ci"])
        if against == "lower":
            because += (f"; the default score is below the training-free detector {method} ({detector['auroc']:.3f}), "
                        "which learns nothing")
    brightness = _probe(section, "brightness", category)
    if brightness is not None and brightness["auroc"] < 0.1:
        because += (f"; brightness alone separates this test split (AUROC {brightness['auroc']:.3f}"
                    f"{_confound_direction(residue, category)})")
    return Verdict(claim, verdict, reason, because)


def _confound_direction(residue: dict | None, category: str) -> str:
    """Which images the brightness confound makes look anomalous, from the control-residue record."""
    stats = ((residue or {}).get("categories", {}).get(category, {}).get("controls", {})
             .get("none", {}).get("brightness"))
    if not stats:
        return ""
    good, defective, train = (stats["test_good_mean"], stats["test_defective_mean"],
                              stats["held_out_normal_mean"])
    odd = "normal" if abs(good - train) > abs(defective - train) else "defective"
    return (f": the {odd} test images are the odd ones, mean intensity {good:.3f} for the normal test "
            f"images against {train:.3f} for held-out normal training images and {defective:.3f} for "
            "the defective ones")


def residue_sentence(section: dict, residue: dict | None, category: str = "screw") -> str:
    """Eq. 1 under the control, beside what a reconstruction that is the image's mean colour scores."""
    arm = section["arms"].get("complementary|per_image", {}).get("per_category", {}).get(category)
    stats = ((residue or {}).get("categories", {}).get(category, {}).get("controls", {})
             .get("per_image", {}))
    if arm is None or "mean_colour_eq1" not in stats:
        return ""
    mean_colour, clipped = stats["mean_colour_eq1"], stats["clipped_fraction"]
    low, high = mean_colour["auroc_ci"]
    return (f"Under the control, eq. 1 on {_name(category)} reaches {_seed_text(arm['eq1'])}, but a "
            f"'reconstruction' that is each image's own mean colour scores {mean_colour['auroc']:.3f} "
            f"[{low:.3f}, {high:.3f}] there with no model at all: the control cuts values to [0, 1], "
            f"and the normal test images have more pixels cut ({clipped['test_good_mean']:.4f} of their "
            f"pixels, against {clipped['test_defective_mean']:.4f} for the defective ones and "
            f"{clipped['held_out_normal_mean']:.4f} for held-out normal training images), so a lower "
            "variance after the cut. It is the control's residue, not the model's learning")


def _pair_verdict(first: tuple[float, float], second: tuple[float, float], interval) -> str:
    """SEEDS_RULE on a 2x2 pair: (mean, std) each, and the paired difference's interval."""
    (a, a_std), (b, b_std) = first, second
    by_spread = "higher" if a - a_std > b + b_std else "lower" if a + a_std < b - b_std else "level"
    by_interval = difference_verdict(list(interval)) if interval is not None else "-"
    if by_interval == "-":
        return "-"
    return by_spread if by_spread == by_interval else "level"


def masking_verdicts(section: dict, paired: dict | None = None) -> list[Verdict]:
    """The masking claim in two: complementary test views against random ones (same weights), and
    training with complementary masks against random masks (same test views)."""
    table = section["two_by_two"]
    paired = paired or section.get("two_by_two_paired")
    epochs = section["config"]["epochs"]

    def cell(trained, tested):
        row = table[trained]
        return float(row[tested]), float(row.get(f"{tested}_std", 0.0))

    def judged(claim, pairs, question):
        parts, words = [], []
        for fixed, (first, second), label in pairs:
            interval = None if paired is None else paired[question][fixed].get("mean")
            word = _pair_verdict(first, second, interval)
            words.append(word)
            shown = "no paired interval recorded" if interval is None else (
                f"paired difference [{interval[0]:+.3f}, {interval[1]:+.3f}]")
            parts.append(f"{label}: {first[0]:.3f} ± {first[1]:.3f} against {second[0]:.3f} ± "
                         f"{second[1]:.3f} ({shown})")
        because = "Mean image AUROC over categories, default score, " + "; ".join(parts)
        because += f"; at {epochs} epochs, one budget"
        if "-" in words:
            return Verdict(claim, NOT_TESTABLE, "interval",
                           because + ": the rule needs the paired interval, which this record lacks")
        verdict = REPRODUCED if all(w == "higher" for w in words) else NOT_REPRODUCED
        return Verdict(claim, verdict, "score" if verdict == REPRODUCED else "budget", because)

    views = judged("complementary views at test time beat random views (Sec. 1.2, argued, not measured "
                   "in the paper)",
                   [(t, (cell(t, "complementary"), cell(t, "random")), f"trained with {t} masks, "
                     "complementary against random views") for t in MASKINGS], "test_views")
    training = judged("training with complementary masks beats training with random masks (Sec. 1.2)",
                      [(v, (cell("complementary", v), cell("random", v)), f"tested with {v} views, "
                        "complementary- against random-trained") for v in MASKINGS], "training")
    return [views, training]


def verdicts(section: dict, *, paired: dict | None = None, residue: dict | None = None,
             table2: dict | None = None, figure3: dict | None = None) -> list[Verdict]:
    """Every claim of the paper with its verdict. ``table2``: {"best_cell", "paper_best_cell",
    "cells_run", "cells_total"}; ``figure3``: {"count", "total", "by_chance"} (the executed
    notebooks' glue), each optional."""
    table1 = paper.table1()
    printed_mean = float(paper.table1_printed_mean()["paper"])
    measured = list(section["arms"]["complementary|none"]["per_category"])
    profile = section["config"]["categories"]
    comparable = [c for c in dict.fromkeys([*profile, *measured]) if c in table1.index]
    out = [Verdict(f"one model for all {len(table1)} MVTec AD categories: mean image AUROC "
                   f"{printed_mean:.3f} (Table 1)", NOT_TESTABLE, "data",
                   f"This study holds {len(comparable)} of the {len(table1)} categories "
                   f"({', '.join(_name(c) for c in comparable)}); a mean over all of them needs all of them")]
    out += [table1_verdict(section, c, residue) for c in comparable]
    claims = paper.claims()
    gains = ", ".join(f"{v:+.2f}% over {k}" for k, v in claims["abstract_relative_gain_percent"].items())
    out.append(Verdict(f"best of the four methods in {claims['categories_best']} of {len(table1)} "
                       f"categories, {gains} (abstract)", NOT_TESTABLE, "data",
                       "The baselines are not re-trained here and the study holds "
                       f"{len(comparable)} of the categories; the paper's own arithmetic is checked "
                       "in the critical reading"))
    out += masking_verdicts(section, paired)
    if table2:
        out.append(Verdict("the best cell of the ablation is E2D4 at r = 0.75 (Table 2)", NOT_TESTABLE,
                           "budget", f"{table2['cells_run']} of {table2['cells_total']} cells were run, "
                           f"one seed each, without an interval; their best is {table2['best_cell']} "
                           f"(the paper's: {table2['paper_best_cell']})"))
    if figure3:
        met, total, chance = figure3["count"], figure3["total"], figure3["by_chance"]
        if chance >= total:
            out.append(Verdict("the highest-score bin holds mostly anomalous images (Figure 3)",
                               NOT_TESTABLE, "score", f"It holds in {met} of {total} categories, but "
                               f"a random score meets it in {chance} of {total} here, where defective "
                               "images are the majority of the test split"))
        else:
            out.append(Verdict("the highest-score bin holds mostly anomalous images (Figure 3)",
                               REPRODUCED if met == total else NOT_REPRODUCED, "score",
                               f"It holds in {met} of {total} categories"))
    return out


def finding(section: dict, residue: dict | None = None, paired: dict | None = None) -> str:
    """The study's finding as prose a reader can repeat, every word computed from the record."""
    arm = section["arms"]["complementary|none"]["per_category"]
    names = [_name(c) for c in arm]
    above = [c for c, e in arm.items() if e["auroc"]["ci"][0] > 0.5]
    mean = sum(e["auroc"]["mean"] for e in arm.values()) / len(arm)
    chance = ("above chance in every category (each 95% interval lies above 0.5, a coin toss's AUROC)"
              if len(above) == len(arm) else
              f"above chance (its 95% interval above 0.5) in {len(above)} of {len(arm)} categories")
    floor = []
    for category, entry in arm.items():
        best = _best_detector(section, category)
        if best and seeds_verdict(entry["auroc"]["seeds"], entry["auroc"]["ci"], best[1]["auroc"],
                                  best[1]["ci"]) != "higher":
            floor.append(f"{_name(category)} ({entry['auroc']['mean']:.3f} against {best[0]} "
                         f"{best[1]['auroc']:.3f})")
    table1 = paper.table1()
    below = [c for c in arm if c in table1.index and table1_verdict(section, c).verdict == NOT_REPRODUCED]
    parts = [f"Trained for {section['config']['epochs']} epochs on a CPU, one model for {', '.join(names)} "
             f"is {chance}: its mean image AUROC with the study's default score is {mean:.3f}."]
    if below:
        parts.append(f"It does not reproduce the paper's Table 1: on {' and '.join(_name(c) for c in below)} "
                     "its numbers, with the paper's eq. 1 and with the default score, stay below the paper's.")
    if floor:
        parts.append("It does not beat the detectors that learn nothing: it is not above the best of "
                     f"them on {'; '.join(floor)}.")
    brightness = _probe(section, "brightness", "screw")
    if brightness is not None and brightness["auroc"] < 0.1:
        parts.append(f"Screw's test split can be told apart by brightness alone (AUROC "
                     f"{brightness['auroc']:.3f}){_confound_direction(residue, 'screw')}, so any score "
                     "that measures departure from the training images is pushed the wrong way on screw.")
    views, training = masking_verdicts(section, paired)
    if NOT_TESTABLE in (views.verdict, training.verdict):
        parts.append("On masking, the gain shows up at test time: complementary views score higher than "
                     "random ones for both trained models, while the model trained with random masks, "
                     "tested with complementary views, scores as high as the one trained with them; the "
                     "record has no paired interval for these differences yet, so the box gives no "
                     "verdict on them."
                     if _two_by_two_direction(section) else
                     "On masking, the record has no paired interval for the 2 × 2 yet: no verdict.")
    else:
        parts.append(f"On masking, the test-time views claim is {views.verdict} and the training masks "
                     f"claim is {training.verdict}, by their paired intervals, at this one budget.")
    return " ".join(parts)


def _two_by_two_direction(section: dict) -> bool:
    """Whether the 2x2's means point the way the finding's sentence says (views up, training not)."""
    t = section["two_by_two"]
    return (t["complementary"]["complementary"] > t["complementary"]["random"]
            and t["random"]["complementary"] > t["random"]["random"]
            and t["random"]["complementary"] >= t["complementary"]["complementary"])


def beyond_findings(section: dict, residue: dict | None = None) -> str:
    """What this study found that neither the paper nor the benchmark's usual tables report, each
    with its measurement: a Markdown list (confound; the control's residue; detectors that learn
    nothing level with the paper's own numbers)."""
    items = []
    brightness = _probe(section, "brightness", "screw")
    if brightness is not None:
        low, high = brightness["ci"]
        items.append(f"**Screw's test split is separable by brightness alone.** Mean brightness as a "
                     f"score (its distance from the training images') has an image AUROC of "
                     f"{brightness['auroc']:.3f} [{low:.3f}, {high:.3f}] on MVTec AD screw"
                     f"{_confound_direction(residue, 'screw')}. An AUROC that far below 0.5 is "
                     "information in the wrong direction: any score that grows with a test image's "
                     "departure from the training images is pulled down on screw by the lighting "
                     "before it sees a defect (bench/results/quality.md, bench/results/control_residue.md).")
    residue_text = residue_sentence(section, residue)
    if residue_text:
        items.append(f"**The control leaves a residue.** {residue_text} (bench/results/control_residue.md).")
    table1 = paper.table1()
    matches = []
    for category in section["arms"]["complementary|none"]["per_category"]:
        if category not in table1.index:
            continue
        printed = float(table1.loc[category, "paper"])
        for d in section.get("detectors", {}).values():
            entry = d["per_category"].get(category)
            if d["control"] != "none" or entry is None or d["method"] in ("brightness", "contrast", "mean_colour"):
                continue
            if entry["ci"][1] >= printed:  # the rule does not place it below the paper's number
                matches.append(f"{d['method']} on {_name(category)}, {entry['auroc']:.3f} "
                               f"[{entry['ci'][0]:.3f}, {entry['ci'][1]:.3f}] against the paper's {printed:.3f}")
    if matches:
        items.append("**Detectors that learn nothing reach the paper's own numbers.** Fitted on the same "
                     "training images at the same size, with no training at all: " + "; ".join(matches)
                     + ". Their intervals hold or pass the paper's values, so on these categories Table 1's "
                     "number alone does not show that a model learned anything (bench/results/quality.md).")
    return "\n".join(f"* {item}" for item in items)


def untested(section: dict) -> str:
    """What stays untested, in one sentence."""
    setting = paper.setting()
    return (f"Untested here: the paper's {setting['image_size']}-pixel images, its {setting['epochs']:,} "
            "epochs and its widths (not given); the other MVTec AD categories; the baselines "
            "re-trained; LPIPS where its weights are missing. The long-run curve of the chapter on "
            "making the model detect shows what more epochs buy, as a description, not a verdict")


def verdict_box(section: dict | None, **inputs) -> str:
    """The box's Markdown body: the budget, one line per claim, what stays untested."""
    if section is None:
        return "*(The evidence record, bench/results/quality.json, is missing: no verdict.)*"
    budget = budget_words(section, inputs.pop("train_images", None), inputs.pop("lpips", None))
    lines = [f"**The budget**: {budget}.", ""]
    lines += [f"- {v.line()}." for v in verdicts(section, **inputs)]
    lines += ["", f"{untested(section)}. {{ref}}`How a verdict is decided <verdict-rule>`."]
    return "\n".join(lines)


def load_records(directory: str | Path | None = None) -> dict:
    """{"section", "paired", "residue"} from bench/results (None where a record is absent). The 2x2's
    paired intervals come from the evidence section or, for the same runs, masking_2x2.json."""
    directory = Path(directory or RESULTS_DIR)

    def read(name):
        path = directory / name
        return json.loads(path.read_text()) if path.is_file() else None

    section = real_section(read("quality.json"))
    paired = None if section is None else section.get("two_by_two_paired")
    extra = read("masking_2x2.json")
    if section is not None and paired is None and extra is not None and (
            extra.get("categories") == section["config"]["categories"]
            and extra.get("epochs") == section["config"]["epochs"]
            and extra.get("seeds") == section["arms"]["complementary|none"]["seeds"]):
        paired = extra["two_by_two_paired"]
    return {"section": section, "paired": paired, "residue": read("control_residue.json")}
