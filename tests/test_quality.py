"""bench.records.quality: targets are judged from the numbers, and the report says met or missed."""

import json

from bench.records.quality import check_targets, markdown


def _seed(bottle, screw, random_bottle, random_screw, minutes):
    def rows(b, s):
        return {"bottle": {"auroc": b, "ci": [b - 0.02, b + 0.02], "eq1": 0.5, "eq1_ci": [0.4, 0.6],
                           "pixel_auroc": 0.93, "n_test": 83},
                "screw": {"auroc": s, "ci": [s - 0.03, s + 0.03], "eq1": 0.4, "eq1_ci": [0.3, 0.5],
                          "pixel_auroc": float("nan"), "n_test": 160},
                "mean": {"auroc": (b + s) / 2, "eq1": 0.45, "pixel_auroc": 0.93}}
    return {"complementary": rows(bottle, screw), "random": rows(random_bottle, random_screw),
            "unstandardized": rows(bottle - 0.123, screw - 0.011),
            "train_minutes": {"complementary": minutes, "random": minutes},
            "test_masking_2x2": {"complementary": {"complementary": 0.8, "random": 0.7},
                                 "random": {"random": 0.6, "complementary": 0.65}},
            "curve": [{"epoch": 1, "minutes": 0.3, "image_auroc": 0.5}], "runs": {}}


def test_targets_are_met_or_missed_by_the_measured_values():
    result = {"seeds": {0: _seed(0.96, 0.85, 0.90, 0.84, 29.0)}}
    checks = {c["target"]: c for c in check_targets("mvtec", result)}
    assert checks["bottle image AUROC >= 0.95"]["met"]
    assert not checks["screw image AUROC >= 0.9"]["met"]
    assert checks["main model training <= 30 min"]["met"]
    bottle_margin = checks["bottle: complementary >= random + 0.05"]
    assert bottle_margin["met"] and bottle_margin["beyond_intervals"]  # 0.94 > 0.92
    screw_margin = checks["screw: complementary >= random + 0.05"]
    assert not screw_margin["met"] and not screw_margin["beyond_intervals"]


def test_targets_use_the_mean_over_seeds():
    result = {"seeds": {0: _seed(0.97, 0.9, 0.9, 0.8, 20.0), 1: _seed(0.91, 0.9, 0.9, 0.8, 40.0)}}
    checks = {c["target"]: c for c in check_targets("mvtec", result)}
    assert abs(checks["bottle image AUROC >= 0.95"]["value"] - 0.94) < 1e-9
    assert not checks["bottle image AUROC >= 0.95"]["met"]
    assert not checks["main model training <= 30 min"]["met"]  # every run counts: 40 > 30


def test_markdown_names_the_machine_and_each_target():
    profile = {"profile": "mvtec", "seeds": {0: _seed(0.96, 0.85, 0.9, 0.84, 29.0)},
               "provenance": "data: MVTec AD", "headline_score": "max of the l2_centered map",
               "floor": {"gaussian": {"per_category": {"bottle": 0.98, "screw": 0.4}, "mean": 0.69,
                                      "seconds": {"fit_seconds": 1.0}}}}
    profile["targets"] = check_targets("mvtec", profile)
    profile.update({"date": "today", "command": "python -m bench.records.quality", "load_before": 0.1,
                    "load_after": 0.2, "wall_minutes": 1.0,
                    "machine": {"cpu": "AMD EPYC", "cores": 2, "threads": 1, "torch": "2"}})
    record = {"profiles": [profile]}
    text = markdown(record)
    assert "AMD EPYC" in text and "| bottle image AUROC >= 0.95 | 0.960 | met |" in text
    assert "| screw image AUROC >= 0.9 | 0.850 | missed |" in text
    assert "0.960 [0.940, 0.980]" in text  # the interval beside the number
    assert "| map not standardised |" in text and "| 0.837 [0.817, 0.857] |" in text


def test_quality_table_shows_the_unstandardised_map_and_tolerates_older_records():
    from maskad_core.study.recipe_log import quality_table

    profile = {"seeds": {0: _seed(0.96, 0.85, 0.9, 0.84, 29.0)},
               "floor": {"gaussian": {"per_category": {"bottle": 0.98, "screw": 0.4}, "mean": 0.69}}}
    table = quality_table(profile)
    assert abs(table.loc["bottle", "map not standardised"] - 0.837) < 1e-9
    del profile["seeds"][0]["unstandardized"]  # recorded before the standardisation existed
    assert quality_table(profile)["map not standardised"].isna().all()


def test_a_run_of_one_profile_keeps_the_others_sections(tmp_path):
    from bench.records.quality import merged_record

    path = tmp_path / "quality.json"
    old = {"date": "earlier", "command": "python -m bench.records.quality", "machine": {"cpu": "A"},
           "load_before": 0.0, "load_after": 0.0, "wall_minutes": 3.0,
           "profiles": [{"profile": "mvtec", "value": 1}, {"profile": "cpu", "value": 2}]}
    path.write_text(json.dumps(old))
    merged = merged_record(path, [{"profile": "cpu", "value": 3, "date": "now"}])
    assert [(p["profile"], p["value"], p["date"]) for p in merged["profiles"]] == [
        ("mvtec", 1, "earlier"), ("cpu", 3, "now")]  # mvtec keeps its own date; cpu is replaced
