"""``python -m bench.records.masking_2x2``: the 2x2 of training x test masking with paired intervals.

    python -m bench.records.masking_2x2      # -> bench/results/masking_2x2.{json,md}

The evidence record (bench/results/quality.json, real profile) holds the 2x2 as means and seed
standard deviations only; the book's rule needs, for a verdict on a difference, the 95% bootstrap
interval of the paired difference. This re-trains (or re-uses from the run cache) the record's
no-control arms with the record's own settings (its categories, epochs and seeds, so the runs are
those of the record) and writes, beside the 2x2's means (which must equal the record's), the paired
intervals of ``bench.records.evidence.two_by_two_paired``: test views (same weights, complementary
minus random views) and training masks (same test views, complementary- minus random-trained).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.records.evidence import MASKINGS, _two_by_two
from bench.records.lab import cores, git, load_average
from maskad_core.evaluation.run_record import train_and_evaluate
from maskad_core.study.profiles import load_profile, train_config
from maskad_core.training.runtime import cpu_name

RESULTS = Path(__file__).resolve().parents[1] / "results"


def measure(quality: Path) -> dict:
    section = next(p for p in json.loads(quality.read_text())["profiles"] if p.get("kind") == "real")
    seeds = section["arms"]["complementary|none"]["seeds"]
    params = load_profile(section["profile"], {"categories": ",".join(section["config"]["categories"]),
                                               "epochs": str(section["config"]["epochs"])})
    arms = {(m, "none"): {"_runs": [train_and_evaluate(train_config(params, seed=s, masking=m,
                                                                    image_standardization="none"), quiet=True)
                                    for s in seeds]} for m in MASKINGS}
    table, paired = _two_by_two(arms)
    return {"profile": section["profile"], "categories": section["config"]["categories"],
            "epochs": section["config"]["epochs"], "seeds": seeds,
            "runs": {m: [r.id for r in arms[(m, "none")]["_runs"]] for m in MASKINGS},
            "two_by_two": table, "two_by_two_paired": paired,
            "record_two_by_two": section["two_by_two"]}


def markdown(record: dict) -> str:
    lines = ["# The 2x2 of training x test masking, with paired intervals", "",
             f"`python -m bench.records.masking_2x2` on {record['date']}, commit {record['commit']}: "
             f"{record['machine']}, {record['minutes']:.1f} min; profile `{record['profile']}` "
             f"({', '.join(record['categories'])}), {record['epochs']} epochs, seeds "
             f"{', '.join(map(str, record['seeds']))}, no control, default score.", "",
             "| trained \\ tested | complementary | random | in quality.json |", "|---|---|---|---|"]
    for trained, row in record["two_by_two"].items():
        old = record["record_two_by_two"][trained]
        lines.append(f"| {trained} | {row['complementary']:.3f} ± {row['complementary_std']:.3f} | "
                     f"{row['random']:.3f} ± {row['random_std']:.3f} | "
                     f"{old['complementary']:.3f} / {old['random']:.3f} |")
    lines += ["", "95% bootstrap interval of the paired difference (both sides on the same resampled "
              "test images):", "", "| question | held fixed | " + " | ".join(record["categories"])
              + " | mean |", "|---|---|" + "---|" * (len(record["categories"]) + 1)]
    for question, label in (("test_views", "complementary minus random test views"),
                            ("training", "complementary- minus random-trained")):
        for fixed, intervals in record["two_by_two_paired"][question].items():
            held = f"trained with {fixed}" if question == "test_views" else f"tested with {fixed} views"
            cells = [f"[{intervals[c][0]:.3f}, {intervals[c][1]:.3f}]" if c in intervals else "not scored"
                     for c in [*record["categories"], "mean"]]
            lines.append(f"| {label} | {held} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=Path, default=RESULTS / "quality.json")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started, load = time.perf_counter(), load_average()
    record = measure(args.quality)
    record.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=git("rev-parse", "--short", "HEAD"),
                  machine=f"{cpu_name()}, {cores()} cores, load (1 min) {load[0]:.2f} before",
                  minutes=(time.perf_counter() - started) / 60)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "masking_2x2.json").write_text(json.dumps(record, indent=1))
    (args.out / "masking_2x2.md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
