"""The lab profile: the cpu profile's main model in a class period, and its recorded measurement
(bench/results/lab.json, written by ``python -m bench.records.lab``). Speed is a recorded benchmark value
read back here, never timed by a test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from maskad_core.study import profiles, report
from maskad_core.training.runs import run_id

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "bench" / "results" / "lab.json"
TEACHING = ROOT / "book" / "teaching.md"
CLASS_MINUTES = 15.0  # what a class period leaves for the whole study


@pytest.fixture(scope="module")
def record() -> dict:
    assert RECORD.is_file(), "bench/results/lab.json is missing: run python -m bench.records.lab"
    return json.loads(RECORD.read_text())


def lab() -> dict:
    return profiles.load_profile("lab")


def test_lab_trains_exactly_the_cpu_profiles_main_model_and_baseline():
    """So that the cpu profile's three-seed record (bench/results/quality.md) applies to it."""
    cpu = profiles.load_profile("cpu")
    assert profiles.train_config(lab()) == profiles.train_config(cpu)
    assert (profiles.train_config(lab(), masking="random")
            == profiles.train_config(cpu, masking="random"))
    assert profiles.train_config(lab()).hash() == profiles.train_config(cpu).hash()


def test_lab_runs_on_the_embedded_generated_set_with_the_same_keys_as_the_other_profiles():
    params = lab()
    assert params["data_root"] is None
    assert set(params) == set(profiles.load_profile("cpu"))


def test_lab_grid_is_at_least_two_cells_and_includes_the_main_run():
    params = lab()
    main = profiles.train_config(params)
    cells = report.ablation_configs(main, params["ablation_depths"], params["ablation_ratios"],
                                    params["ablation_epochs"])
    assert len(cells) >= 2
    assert main in cells.values(), "the main run must be a cell of the Table 2 grid (one run fewer)"
    cpu = profiles.load_profile("cpu")
    assert len(cells) < len(cpu["ablation_depths"]) * len(cpu["ablation_ratios"])  # cut, not the cpu grid


def test_recorded_whole_study_fits_a_class_period(record):
    assert record["profile"] == "lab"
    assert record["notebooks_executed"] == 7, record.get("log_tail")
    # the build ran to its end, built or failed on warnings (-W --keep-going: a glue name that the
    # real edition did not glue yet when it was measured); the minutes include it either way
    assert record["book_built"] or record["book_build_failed"], record.get("log_tail")
    minutes = record["minutes"]
    assert 0 < minutes["whole_study"] <= CLASS_MINUTES
    assert minutes["training_main"] + minutes["training_random"] < minutes["whole_study"]
    assert record["machine"]["cores"] >= 1 and record["machine"]["load_avg_before"]


@pytest.mark.parametrize("arm,masking", [("main", "complementary"), ("random", "random")])
def test_recorded_runs_are_the_lab_profiles_seed_0_runs(record, arm, masking):
    """The recorded AUROCs belong to runs with the lab profile's settings at seed 0: the run id is
    the hash of exactly that configuration and the data digest the run folder recorded."""
    run = record[arm]
    config = profiles.train_config(lab(), **({} if masking == "complementary" else {"masking": masking}))
    assert config.seed == 0 and run["seed"] == 0 and run["masking"] == masking
    assert run["config_hash"] == run["recorded_config_hash"] == config.hash()
    assert run["run"] == run_id(config, {"digest": run["data_digest"]})
    assert 0.0 <= run["image_auroc"] <= 1.0 and run["epochs"] == config.epochs


def test_recorded_difference_is_main_minus_random(record):
    assert record["difference"] == pytest.approx(
        record["main"]["image_auroc"] - record["random"]["image_auroc"], abs=1e-4)


def test_lab_description_states_the_recorded_measurement(record):
    description = " ".join(profiles.profile_description("lab").split())
    assert f"Measured {record['date'][:10]}" in description
    assert f"{record['minutes']['whole_study']:.1f} min" in description
    assert f"{record['main']['image_auroc']:.3f}" in description
    assert f"{record['random']['image_auroc']:.3f}" in description


def lesson_plan() -> list[tuple[int, int, str]]:
    """(start, end, row text) of the lesson plan's table in book/teaching.md."""
    rows = []
    for line in TEACHING.read_text(encoding="utf8").splitlines():
        match = re.match(r"\|\s*(\d+)\s*[–-]\s*(\d+)\s*\|(.*)", line)
        if match:
            rows.append((int(match.group(1)), int(match.group(2)), match.group(3)))
    return rows


def test_lesson_plan_fills_90_minutes_and_reads_the_lab_after_it_finished(record):
    rows = lesson_plan()
    assert rows and rows[0][0] == 0 and rows[-1][1] == 90
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:], strict=False)), "the rows must follow each other"
    start = next(s for s, _, text in rows if "maskad study --profile lab" in text)
    reading = next(s for s, _, text in rows if "04_table1" in text)
    # the recorded minutes, with room for a laptop twice as slow as the measuring machine
    assert start + 2 * record["minutes"]["whole_study"] <= reading


def test_seed_exercise_cites_the_real_editions_glue_and_hides_its_answer():
    text = TEACHING.read_text(encoding="utf8")
    for category in ("bottle", "screw"):
        for name in ("seeds", "mean", "std", "interval", "random_mean", "random_std", "verdict"):
            assert f"executed-real/04_table1.ipynb::t1_{category}_{name}" in text, (category, name)
    assert "executed-real/04_table1.ipynb::t1_n_seeds" in text
    exercise = text.index("{admonition} Exercise 11:")
    answer = text.index("````{admonition} Solution\n:class: dropdown", exercise)  # hidden by default
    assert "````{admonition}" not in text[exercise + 1:answer]  # the exercise's own solution, next
    solution = text[answer:text.index("\n````\n", answer)]
    assert "spread_verdict(seeds" in solution and "glued_value(" in solution


def test_every_value_the_teaching_notes_cite_is_glued_by_the_real_edition():
    from maskad_core.study.glue import read_glue

    text = TEACHING.read_text(encoding="utf8")
    cited = set(re.findall(r"executed-real/04_table1\.ipynb::(\w+)", text))
    glued = set(read_glue(ROOT / "book" / "executed-real" / "04_table1.ipynb"))
    assert cited and not cited - glued, sorted(cited - glued)
