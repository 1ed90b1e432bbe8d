"""The study's headline over training seeds, as the book shows it: Table 1 beside the paper (the
study's default score and the paper's eq. 1, both labelled), the masking comparison, the
training-free detectors (floors and confound probes) and localisation, with every comparative word
decided by :func:`compare`, the one rule the book states in its glossary.

:func:`measure` trains (or re-uses) one model per seed for each masking and fits the detectors;
the ``*_frame`` functions return formatted tables (strings, no NaN); :func:`glue_values` returns
the scalars the pages paste.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from maskad_core.study import paper
from maskad_core.study.comparison import (
    SEEDS_RULE,
    SPREAD_RULE,
    difference_verdict,
    format_interval,
    interval_verdict,
    seeds_verdict,
    spread_verdict,
)
from maskad_core.study.report import budget_description
from maskad_core.study.seeds import (
    MEAN,
    DetectorResult,
    SeedStatistic,
    arm_statistics,
    best_detector,
    detector_results,
    paired_differences,
    pixel_auroc_over_seeds,
    train_seeds,
)
from maskad_core.training.config import TrainConfig

INTERVAL_RULE = ("with one training seed: higher (or lower) when the test images separate the two "
                 "(the 95% bootstrap interval of the paired difference excludes zero; against a "
                 "training-free detector or a printed number, the two 95% intervals do not "
                 "overlap); otherwise level")
RULES = {"seeds": SEEDS_RULE, "one seed": INTERVAL_RULE}
PIXEL_RULE = "pixel AUROC, which has no interval here, by the seed spread alone: " + SPREAD_RULE
DASH = "–"


def compare(first: SeedStatistic, second: SeedStatistic | DetectorResult | float,
            difference: tuple[float, float] | None = None) -> str:
    """"higher", "lower" or "level": by the seed spread and the intervals together (SEEDS_RULE) when
    ``first`` has two or more seeds (a detector or a number has no spread), else by the 95%
    intervals alone (INTERVAL_RULE). ``difference``: the 95% interval of the paired difference
    first minus second (two arms scored on the same test images), used instead of the overlap."""
    if isinstance(second, DetectorResult):
        values, interval = second.auroc, second.interval
    elif isinstance(second, SeedStatistic):
        values, interval = second.seeds, second.interval
    else:
        values, interval = float(second), (float(second), float(second))
    if len(first.seeds) > 1:
        return seeds_verdict(first.seeds, first.interval, values, interval, difference)
    word = (difference_verdict(list(difference)) if difference is not None
            else interval_verdict(list(first.interval), list(interval)))
    return {"not resolved": "level"}.get(word, word)


def mean_std(stat: SeedStatistic | None) -> str:
    """"0.982 ± 0.003" over seeds, "0.982" for one seed, a dash where there is none."""
    if stat is None or not np.isfinite(stat.mean):
        return DASH
    return f"{stat.mean:.3f}" + (f" ± {stat.std:.3f}" if len(stat.seeds) > 1 else "")


def number(value, digits: int = 3) -> str:
    """A value for a page: rounded, a dash for NaN or None, yes/no for booleans."""
    if value is None:
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return DASH if not np.isfinite(value) else f"{float(value):.{digits}f}"


@dataclasses.dataclass
class Headline:
    """Everything the Table 1 page states, over ``seeds``."""

    config: TrainConfig
    seeds: list[int]
    n_test: dict[str, int]
    ours: dict[str, SeedStatistic]        # the default score, complementary masking
    ours_eq1: dict[str, SeedStatistic]    # the paper's eq. 1, same models
    random: dict[str, SeedStatistic]      # the default score, random masking (vanilla MAE)
    pixel: dict[str, SeedStatistic]
    random_pixel: dict[str, SeedStatistic]
    detectors: dict[str, dict[str, DetectorResult]]
    ours_runs: list = dataclasses.field(repr=False, default_factory=list)  # one per seed
    # per category and MEAN: 95% interval of ours minus random, paired on the same test images
    masking_difference: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @property
    def categories(self) -> list[str]:
        return [c for c in self.ours if c != MEAN]

    @property
    def paper_rows(self) -> list[str]:
        """Categories that are rows of the paper's Table 1 (real MVTec AD only: see comparable)."""
        return [c for c in self.categories if c in paper.table1().index]


def measure(config: TrainConfig, seeds: Sequence[int], *, detectors: bool = True) -> Headline:
    """Train (or re-use) complementary and random masking for every seed, score both with the
    default score and eq. 1, and fit the training-free detectors on the same images."""
    reduction = config.score_reduction
    ours_runs = train_seeds(config, seeds)
    random_runs = train_seeds(config, seeds, masking="random")
    ours_frames = [run.scores for run in ours_runs]
    random_frames = [run.scores for run in random_runs]
    per_category = ours_runs[0].metrics["per_category"]
    return Headline(
        config=config, seeds=[int(s) for s in seeds],
        n_test={c: int(v["n_test"]) for c, v in per_category.items()},
        ours=arm_statistics(ours_frames, f"score_{reduction}"),
        ours_eq1=arm_statistics(ours_frames, "score_eq1"),
        random=arm_statistics(random_frames, f"score_{reduction}"),
        pixel=pixel_auroc_over_seeds(ours_runs), random_pixel=pixel_auroc_over_seeds(random_runs),
        detectors=detector_results(config) if detectors else {},
        ours_runs=ours_runs,
        masking_difference=paired_differences(ours_frames, random_frames, f"score_{reduction}"))


def _paper_value(category: str, comparable: bool) -> float | None:
    table = paper.table1()
    return float(table.loc[category, "paper"]) if comparable and category in table.index else None


def table1_frame(h: Headline, *, comparable: bool) -> pd.DataFrame:
    """Per category and mean: the study's default score (mean ± seed std, 95% interval), eq. 1,
    random masking, the verdict by :func:`compare`, and the paper's value where comparable (no
    paper column when no row is: a column reading "outside the paper" on every row says nothing)."""
    rows = {}
    any_comparable = any(_paper_value(c, comparable) is not None for c in h.categories)
    for category in [*h.categories, MEAN]:
        paper_value = _paper_value(category, comparable)
        rows[category] = {
            "test images": str(h.n_test.get(category, sum(h.n_test.values()))),
            "ours: default score": mean_std(h.ours[category]),
            "95% interval": format_interval(list(h.ours[category].interval)).replace("-", DASH),
            "ours: eq. 1 (paper's score)": mean_std(h.ours_eq1.get(category)),
            "random masking: default score": mean_std(h.random[category]),
            "complementary − random: paired 95% interval": format_interval(
                list(h.masking_difference.get(category, (np.nan, np.nan)))).replace("-", DASH),
            "complementary vs random": compare(h.ours[category], h.random[category],
                                               h.masking_difference.get(category)),
            "paper (Table 1)": number(paper_value) if paper_value is not None else (
                "outside the paper" if category != MEAN else DASH),
        }
        if not any_comparable:
            del rows[category]["paper (Table 1)"]
    frame = pd.DataFrame(rows).T
    frame.index.name = "category"
    return frame


def comparability(h: Headline, *, comparable: bool) -> str:
    """Whether and how the rows compare with the paper's rows."""
    if not comparable:
        return ("These categories are generated images, not MVTec AD: some share a name with an "
                "MVTec AD category, but the images differ, so the paper's numbers are NOT comparable "
                "with these rows; its Table 1 is shown below for reference only.")
    outside = [c for c in h.categories if c not in h.paper_rows]
    text = (f"The rows {', '.join(h.paper_rows)} are MVTec AD categories with the official test "
            f"split: comparable with the paper's rows for the same categories, at a reduced budget "
            f"({budget_description(h.config)}; the paper: 224 px, 1000 epochs, 4 GPUs).")
    if outside:
        text += (f" The rows {', '.join(outside)} are not MVTec AD: outside the paper's Table 1, "
                 "and in our mean row, which is therefore not comparable with the paper's mean.")
    return text


def gaps_to_paper(h: Headline) -> dict[str, tuple[float, float]]:
    """Per category of the paper's table: (default score minus paper, eq. 1 minus paper)."""
    printed = paper.table1()["paper"]
    return {c: (h.ours[c].mean - printed[c], h.ours_eq1[c].mean - printed[c]) for c in h.paper_rows}


def gap_statement(h: Headline, *, comparable: bool) -> str:
    """The gap to the paper, naming the score of every number; what explains it is not claimed."""
    if not comparable or not h.paper_rows:
        return ("These rows are not MVTec AD, so no gap to the paper's Table 1 is stated: the paper's "
                "numbers measure other images.")
    gaps = gaps_to_paper(h)
    text = "; ".join(f"{c} {d:+.3f} with the study's default score, {e:+.3f} with the paper's eq. 1"
                     for c, (d, e) in gaps.items())
    return (f"Ours minus the paper's Table 1 (mean over {len(h.seeds)} training seeds): {text}. The "
            "budget differs from the paper's (the settings are stated with the table) and the paper leaves the loss "
            "weights, widths and schedule open; how much of each gap those differences explain was "
            "not measured here.")


def floor_frame(h: Headline) -> pd.DataFrame:
    """Per category: our default score beside every training-free detector (image AUROC), the best
    detector and the verdict by :func:`compare`."""
    rows = {}
    for category in h.categories:
        row = {"ours: default score": mean_std(h.ours[category])}
        for method, results in h.detectors.items():
            row[method] = number(results[category].auroc) if category in results else DASH
        best, _ = best_detector(h.detectors, category)
        row["best detector"] = best
        row["ours vs best"] = compare(h.ours[category], h.detectors[best][category]) if best in h.detectors else DASH
        rows[category] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "category"
    return frame


def pixel_frame(h: Headline) -> pd.DataFrame:
    """Per category with defect masks: pixel AUROC of both maskings and of every detector, and our
    verdict against the best detector by SPREAD_RULE alone (PIXEL_RULE): no interval over test
    images is computed for pixel AUROC."""
    rows = {}
    for category in h.categories:
        if category not in h.pixel:
            continue
        row = {"ours": mean_std(h.pixel[category]), "random masking": mean_std(h.random_pixel.get(category))}
        for method, results in h.detectors.items():
            row[method] = number(results[category].pixel_auroc) if category in results else DASH
        best, value = best_detector(h.detectors, category, pixel=True)
        row["best detector"] = best
        row["ours vs best"] = spread_verdict(h.pixel[category].seeds, value) if best in h.detectors else DASH
        rows[category] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "category"
    return frame


def _count(words: Mapping[str, str], word: str) -> int:
    return sum(1 for w in words.values() if w == word)


def glue_values(h: Headline, *, comparable: bool, prefix: str = "t1") -> dict[str, object]:
    """The scalars the pages paste, named ``<prefix>_<category>_<quantity>`` and
    ``<prefix>_mean_<quantity>`` (prefix t1: the profile's own setting; t1c: under the control)."""
    values: dict[str, object] = {f"{prefix}_n_seeds": len(h.seeds),
                                 f"{prefix}_seeds_list": ", ".join(map(str, h.seeds)),
                                 f"{prefix}_verdict_rule": RULES["seeds" if len(h.seeds) > 1 else "one seed"],
                                 f"{prefix}_pixel_rule": PIXEL_RULE}
    floors, pixels = floor_frame(h), pixel_frame(h)
    for category in [*h.categories, MEAN]:
        key = f"{prefix}_mean" if category == MEAN else f"{prefix}_{category}"
        ours, eq1, random = h.ours[category], h.ours_eq1.get(category), h.random[category]
        values.update({
            f"{key}_mean": round(ours.mean, 3), f"{key}_std": round(ours.std, 3),
            f"{key}_seeds": ", ".join(f"{v:.3f}" for v in ours.seeds),
            f"{key}_interval": format_interval(list(ours.interval)),
            f"{key}_eq1_mean": round(eq1.mean, 3) if eq1 else float("nan"),
            f"{key}_random_mean": round(random.mean, 3), f"{key}_random_std": round(random.std, 3),
            f"{key}_random_interval": format_interval(list(random.interval)),
            f"{key}_verdict": compare(ours, random, h.masking_difference.get(category)),
            f"{key}_difference_interval": format_interval(list(h.masking_difference.get(category, (np.nan, np.nan)))),
        })
        if category in floors.index:
            values[f"{key}_best_detector"] = floors.loc[category, "best detector"]
            values[f"{key}_vs_best_detector"] = floors.loc[category, "ours vs best"]
        if category in pixels.index:
            values[f"{key}_pixel_mean"] = round(h.pixel[category].mean, 3)
            values[f"{key}_pixel_vs_best_detector"] = pixels.loc[category, "ours vs best"]
    verdicts = {c: compare(h.ours[c], h.random[c], h.masking_difference.get(c)) for c in h.categories}
    floor_words = dict(floors["ours vs best"]) if len(floors) else {}
    pixel_words = dict(pixels["ours vs best"]) if len(pixels) else {}
    values.update({
        f"{prefix}_categories": len(h.categories),
        f"{prefix}_masking_higher": _count(verdicts, "higher"), f"{prefix}_masking_lower": _count(verdicts, "lower"),
        f"{prefix}_masking_level": _count(verdicts, "level"),
        f"{prefix}_floor_higher": _count(floor_words, "higher"), f"{prefix}_floor_lower": _count(floor_words, "lower"),
        f"{prefix}_floor_level": _count(floor_words, "level"),
        f"{prefix}_pixel_categories": len(pixel_words),
        f"{prefix}_pixel_higher": _count(pixel_words, "higher"), f"{prefix}_pixel_lower": _count(pixel_words, "lower"),
        f"{prefix}_pixel_level": _count(pixel_words, "level"),
        f"{prefix}_gap_statement": gap_statement(h, comparable=comparable),
    })
    for category, (default_gap, eq1_gap) in (gaps_to_paper(h).items() if comparable else ()):
        printed = float(paper.table1().loc[category, "paper"])
        values[f"{prefix}_{category}_paper"] = printed
        values[f"{prefix}_{category}_gap"] = round(default_gap, 3)
        values[f"{prefix}_{category}_gap_eq1"] = round(eq1_gap, 3)
        values[f"{prefix}_{category}_vs_paper"] = compare(h.ours[category], printed)
        values[f"{prefix}_{category}_eq1_vs_paper"] = compare(h.ours_eq1[category], printed)
    values[f"{prefix}_default_vs_eq1"] = compare(h.ours[MEAN], h.ours_eq1[MEAN])
    values[f"{prefix}_mean_vs_chance"] = compare(h.ours[MEAN], 0.5)
    # plain Python numbers: a glued numpy scalar reads back as "np.float64(...)", not a number
    return {name: (float(v) if isinstance(v, (float, np.floating)) else
                   int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v)
            for name, v in values.items()}


def reduction_frame(h: Headline) -> pd.DataFrame:
    """Image AUROC (mean ± seed std) of the complementary-mask models with each reduction of the
    default map (mean, max, top-k) and with eq. 1: which image score the study reports, and why."""
    frames = [run.scores for run in h.ours_runs]
    columns = {"mean of the map": "score_mean", "max of the map": "score_max",
               "top-k mean of the map": "score_topk", "eq. 1 (paper's score)": "score_eq1"}
    stats = {label: arm_statistics(frames, column) for label, column in columns.items()
             if column in frames[0]}
    frame = pd.DataFrame({label: {c: mean_std(s.get(c)) for c in [*h.categories, MEAN]}
                          for label, s in stats.items()})
    frame.index.name = "category"
    return frame


def control_frame(plain: Headline, control: Headline) -> pd.DataFrame:
    """Per category: the default score without and with the control (each image standardised),
    random masking under the control, the best detector under the control and the verdicts."""
    rows = {}
    for category in plain.categories:
        best, _ = best_detector(control.detectors, category)
        rows[category] = {
            "ours: no control": mean_std(plain.ours[category]),
            "ours: control": mean_std(control.ours[category]),
            "random masking: control": mean_std(control.random[category]),
            "complementary vs random (control)": compare(control.ours[category], control.random[category]),
            "best detector (control)": (f"{best} {control.detectors[best][category].auroc:.3f}"
                                        if best in control.detectors else DASH),
            "ours vs best (control)": (compare(control.ours[category], control.detectors[best][category])
                                       if best in control.detectors else DASH),
        }
    frame = pd.DataFrame(rows).T
    frame.index.name = "category"
    return frame
