"""``python -m bench.records.power``: how many test images per generated category resolve a 0.05 image-AUROC
difference (complementary vs random masking, or the model vs the training-free floor) with 3
training seeds; writes bench/results/power.{json,md}. Seconds, no training.

The model, stated:

* Standard error of one AUROC A on n_good normal and n_defective anomalous images: Hanley & McNeil
  (1982), "The meaning and use of the area under a receiver operating characteristic (ROC) curve",
  Radiology 143(1):29-36, eq. 1 with their exponential approximation Q1 = A/(2-A), Q2 = 2A^2/(1+A):
  SE^2 = [A(1-A) + (n_defective-1)(Q1-A^2) + (n_good-1)(Q2-A^2)] / (n_defective n_good).
* A difference of two AUROCs measured on the SAME test images (paired): Var1 + Var2 - 2 r SE1 SE2,
  with r the correlation of the two AUROCs over test sets. r = 0 is the conservative case (as if
  the images were independent); r = 0.5 a typical paired case (Hanley & McNeil 1983 report r of
  0.3-0.6 for two readings of the same cases). The two AUROCs are A and A + 0.05.
* Seeds: each arm is the mean over k = 3 training seeds on one fixed test set. Averaging seeds does
  NOT shrink the test-image variance (every seed is scored on the same images); it divides only the
  training-seed variance by k. The seed spread is taken as 0.005 (SD of a category's AUROC over
  seeds 0, 1, 2 on the generated set, bench/results/quality.md: mean rows +-0.004 to +-0.006, most
  categories +-0.001 to +-0.009). Two trained arms add 2 * 0.005^2 / 3 to the variance of the
  difference; model vs the deterministic floor adds 0.005^2 / 3.
* Resolvable: 1.96 SE_diff <= 0.05 (the 95% interval of the difference is at most +-0.05); 80%
  power of a two-sided 5% test of a true difference of 0.05: (1.96 + 0.84) SE_diff <= 0.05.
* n per category keeps the generator's good : defective ratio (DEFAULT_TEST_GOOD :
  DEFAULT_TEST_DEFECTIVE, maskad_core/data/synthetic/writer.py).

Empirical check: scores from two equal-variance binormal models (AUROC A and A + 0.05, scores of
the two models correlated rho on each image), the paired stratified percentile bootstrap 95%
interval of the AUROC difference, and the fraction of simulations whose interval excludes 0. One
training seed per arm is simulated (no seed noise): the check tests the test-image part.
"""

from __future__ import annotations

import argparse
import datetime
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

from maskad_core.data.synthetic import DEFAULT_TEST_DEFECTIVE, DEFAULT_TEST_GOOD, GENERATOR_VERSION
from maskad_core.metrics import image_auroc
from maskad_core.training.runs import atomic_write_text, write_json
from maskad_core.training.runtime import cpu_name

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
DIFFERENCE = 0.05
LEVELS = (0.70, 0.80, 0.90)
CORRELATIONS = (0.0, 0.5)
SEEDS = 3
SEED_SD = 0.005
Z_95 = 1.96
Z_POWER80 = 0.84
CRITERIA = {"resolvable": Z_95, "power80": Z_95 + Z_POWER80}
COMPARISONS = {"trained vs trained": 2, "model vs floor": 1}  # arms carrying seed noise


def hanley_mcneil_se(auroc: float, n_good: int, n_defective: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUROC on n_good normal, n_defective anomalous."""
    a = float(auroc)
    q1, q2 = a / (2.0 - a), 2.0 * a * a / (1.0 + a)
    var = (a * (1.0 - a) + (n_defective - 1) * (q1 - a * a) + (n_good - 1) * (q2 - a * a)) / (
        n_defective * n_good)
    return math.sqrt(var)


def se_difference(a1: float, a2: float, n_good: int, n_defective: int, r: float,
                  seed_arms: int = 2, seeds: int = SEEDS, seed_sd: float = SEED_SD) -> float:
    """SE of A2 - A1 on one paired test set, each arm the mean of ``seeds`` training seeds."""
    se1, se2 = hanley_mcneil_se(a1, n_good, n_defective), hanley_mcneil_se(a2, n_good, n_defective)
    var = se1 ** 2 + se2 ** 2 - 2.0 * r * se1 * se2 + seed_arms * seed_sd ** 2 / seeds
    return math.sqrt(var)


def ratio() -> tuple[int, int]:
    g = math.gcd(DEFAULT_TEST_GOOD, DEFAULT_TEST_DEFECTIVE)
    return DEFAULT_TEST_GOOD // g, DEFAULT_TEST_DEFECTIVE // g


def required_n(level: float, r: float, z: float, seed_arms: int = 2, diff: float = DIFFERENCE,
               max_steps: int = 100_000) -> dict:
    """Smallest test set (good, defective in the generator's ratio) with z * SE_diff <= diff."""
    good, bad = ratio()
    for m in range(1, max_steps):
        se = se_difference(level, level + diff, good * m, bad * m, r, seed_arms)
        if z * se <= diff:
            return {"n": (good + bad) * m, "n_good": good * m, "n_defective": bad * m,
                    "se_diff": round(se, 5)}
    raise ValueError(f"no n up to {max_steps} steps resolves {diff} at level {level}, r {r}")


def _aurocs(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Row-wise AUROC (Mann-Whitney) of positives (B, p) against negatives (B, q)."""
    ranks = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    p, q = pos.shape[1], neg.shape[1]
    return (ranks[:, :p].sum(axis=1) - p * (p + 1) / 2.0) / (p * q)


def simulate(level: float, n_good: int, n_defective: int, rho: float = 0.5, reps: int = 300,
             resamples: int = 300, diff: float = DIFFERENCE, seed: int = 0) -> dict:
    """Fraction of paired bootstrap 95% intervals of AUROC(B) - AUROC(A) that exclude 0."""
    rng = np.random.default_rng(seed)
    d1, d2 = math.sqrt(2.0) * ndtri(level), math.sqrt(2.0) * ndtri(level + diff)
    cov = [[1.0, rho], [rho, 1.0]]
    excluded, pairs = 0, []
    for _ in range(reps):
        neg = rng.multivariate_normal([0.0, 0.0], cov, n_good)
        pos = rng.multivariate_normal([d1, d2], cov, n_defective)
        labels = np.r_[np.zeros(n_good, bool), np.ones(n_defective, bool)]
        pairs.append([image_auroc(labels, np.r_[neg[:, k], pos[:, k]]) for k in (0, 1)])
        ig = rng.integers(0, n_good, (resamples, n_good))
        idf = rng.integers(0, n_defective, (resamples, n_defective))
        boot = _aurocs(pos[idf, 1], neg[ig, 1]) - _aurocs(pos[idf, 0], neg[ig, 0])
        low, high = np.quantile(boot, [0.025, 0.975])
        excluded += bool(low > 0.0 or high < 0.0)
    pairs_np = np.asarray(pairs)
    return {"level": level, "n_good": n_good, "n_defective": n_defective, "rho_scores": rho,
            "reps": reps, "resamples": resamples, "excluding_zero": round(excluded / reps, 3),
            "auroc_correlation": round(float(np.corrcoef(pairs_np.T)[0, 1]), 3),
            "mean_aurocs": [round(float(v), 3) for v in pairs_np.mean(axis=0)]}


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return " ".join(line.split(":", 1)[1].split())
    except (OSError, subprocess.CalledProcessError):
        pass
    return cpu_name()


def run(reps: int, resamples: int) -> dict:
    current_good, current_bad = DEFAULT_TEST_GOOD, DEFAULT_TEST_DEFECTIVE
    table = []
    for comparison, arms in COMPARISONS.items():
        for level in LEVELS:
            for r in CORRELATIONS:
                row = {"comparison": comparison, "level": level, "r": r}
                for name, z in CRITERIA.items():
                    row[name] = required_n(level, r, z, arms)
                row["current_half_width"] = round(
                    Z_95 * se_difference(level, level + DIFFERENCE, current_good, current_bad, r, arms), 3)
                table.append(row)
    single = {str(level): round(Z_95 * hanley_mcneil_se(level, current_good, current_bad), 3)
              for level in LEVELS}
    key = next(row for row in table if row["comparison"] == "trained vs trained"
               and row["level"] == 0.80 and row["r"] == 0.5)
    step = sum(ratio()) * 10  # round numbers in the generator's ratio: 50, 100, 150, ...
    recommend = {name: int(math.ceil(key[name]["n"] / step) * step) for name in CRITERIA}
    good, bad = ratio()
    checks, started = [], time.perf_counter()
    for level in LEVELS:
        ns = [(current_good, current_bad)]
        if level == 0.80:
            ns += [(key["resolvable"]["n_good"], key["resolvable"]["n_defective"])]
        row = next(row for row in table if row["comparison"] == "trained vs trained"
                   and row["level"] == level and row["r"] == 0.5)
        ns.append((row["power80"]["n_good"], row["power80"]["n_defective"]))
        for n_good, n_bad in ns:
            checks.append(simulate(level, n_good, n_bad, 0.5, reps, resamples))
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "command": "python -m bench.records.power " + " ".join(sys.argv[1:]),
        "generator_version": GENERATOR_VERSION,
        "current": {"n": current_good + current_bad, "n_good": current_good,
                    "n_defective": current_bad},
        "current_single_auroc_half_width": single,
        "assumptions": {"difference": DIFFERENCE, "seeds": SEEDS, "seed_sd": SEED_SD,
                        "correlations": list(CORRELATIONS), "z": CRITERIA,
                        "se": "Hanley & McNeil (1982), Q1 = A/(2-A), Q2 = 2A^2/(1+A)",
                        "pair": "A and A + 0.05 on the same test images"},
        "table": table, "recommendation": recommend,
        "recommendation_n_good_defective": {name: [n * good // (good + bad), n * bad // (good + bad)]
                                            for name, n in recommend.items()},
        "empirical": checks, "empirical_seconds": round(time.perf_counter() - started, 1),
    }


def markdown(res: dict) -> str:
    cur = res["current"]
    lines = [f"Command: `{res['command'].strip()}`  ",
             f"Date: {res['date']}; machine: {res['machine']}; generator version "
             f"{res['generator_version']}; empirical check {res['empirical_seconds']} s.", "",
             f"Test images per category (good + defective, ratio {cur['n_good']}:{cur['n_defective']}) "
             f"needed to resolve an image-AUROC difference of {DIFFERENCE} (A vs A + {DIFFERENCE}) on "
             f"one paired test set, each arm the mean of {SEEDS} training seeds (seed SD "
             f"{SEED_SD}; seeds do not shrink the test-image variance). SE: Hanley & McNeil (1982). "
             f"Resolvable: 1.96 SE_diff <= {DIFFERENCE}; 80% power: 2.80 SE_diff <= {DIFFERENCE}. "
             f"Current: {cur['n']} ({cur['n_good']} + {cur['n_defective']}).", "",
             "| comparison | AUROC | r | n resolvable (good + defective) | n 80% power | "
             "half-width of the difference now |", "|---|---|---|---|---|---|"]
    for row in res["table"]:
        cells = [f"{row[c]['n']} ({row[c]['n_good']} + {row[c]['n_defective']})" for c in CRITERIA]
        lines.append(f"| {row['comparison']} | {row['level']:.2f} | {row['r']} | {cells[0]} | "
                     f"{cells[1]} | ±{row['current_half_width']:.3f} |")
    half = ", ".join(f"{k}: ±{v}" for k, v in res["current_single_auroc_half_width"].items())
    rec = res["recommendation"]
    lines += ["", f"One AUROC's 95% half-width now (1.96 SE, n = {cur['n']}): {half}.", "",
              f"Recommendation (trained vs trained, AUROC 0.80, r = 0.5, rounded up to a multiple "
              f"of 50): {rec['resolvable']} test images per category to resolve a 0.05 difference "
              f"at 95%; {rec['power80']} for 80% power.", "",
              "Empirical check (binormal, score correlation 0.5, paired stratified bootstrap 95% "
              "interval of the difference; fraction of simulations whose interval excludes 0):", "",
              "| AUROC | n (good + defective) | excludes 0 | AUROC correlation | reps x resamples |",
              "|---|---|---|---|---|"]
    for c in res["empirical"]:
        lines.append(f"| {c['level']:.2f} → {c['level'] + DIFFERENCE:.2f} | {c['n_good'] + c['n_defective']} "
                     f"({c['n_good']} + {c['n_defective']}) | {c['excluding_zero']:.3f} | "
                     f"{c['auroc_correlation']:.2f} | {c['reps']} x {c['resamples']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.power", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=300, help="simulations per empirical check")
    parser.add_argument("--resamples", type=int, default=300, help="bootstrap resamples")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results folder")
    args = parser.parse_args(argv)
    res = run(args.reps, args.resamples)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "power.json", res)
    text = markdown(res)
    atomic_write_text(args.out / "power.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
