"""The recipe log: TrainConfig's defaults are what it says, and every decision finds its numbers."""

import json

import pytest

from maskad_core.study.recipe_log import chosen_defaults, decision_table, load_log
from maskad_core.training.config import TrainConfig


def test_train_config_defaults_are_the_recipe_logs_choices():
    defaults = TrainConfig().to_dict()
    chosen = chosen_defaults()
    assert chosen, "the log names no decision"
    for setting, value in chosen.items():
        assert defaults[setting] == type(defaults[setting])(value), setting


def test_every_decision_names_a_measured_chosen_option():
    table = decision_table()
    for setting, rows in table.groupby("setting"):
        assert rows.measured.all(), f"{setting}: an alternative has no measurement"
        assert rows.is_chosen.sum() == 1, f"{setting}: chosen_option is not one of its options"
        assert len(rows) >= 2, f"{setting}: no alternative"


def test_decision_table_reads_numbers_from_the_measurement_file(tmp_path):
    log = {"decisions": [{"setting": "lr", "chosen": 0.002, "chosen_option": "2e-3",
                          "study": "toy", "variants": {"1e-3": "a", "2e-3": "b"}}]}
    common = {"test_partitions": 1, "anomaly_map": "l2", "smooth_sigma": 0.0, "reduction": "mean",
              "pixel_auroc": 0.5, "train_seconds": 10.0}
    lines = [{**common, "variant": "a", "image_auroc": 0.61},
             {**common, "variant": "b", "image_auroc": 0.7},
             {**common, "variant": "b", "image_auroc": 0.72}]  # a later measurement wins
    (tmp_path / "toy.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    table = decision_table(log, tmp_path)
    assert table.set_index("option").image_auroc.to_dict() == {"1e-3": 0.61, "2e-3": 0.72}
    assert table.set_index("option").is_chosen.to_dict() == {"1e-3": False, "2e-3": True}
    with pytest.raises(FileNotFoundError, match="bench.records.recipe"):
        decision_table({"decisions": [{**log["decisions"][0], "study": "missing"}]}, tmp_path)


def test_the_log_states_its_tuning_data():
    assert "seed 1" in load_log()["tuning_data"]
