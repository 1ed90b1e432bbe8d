"""The compute curve (bench.records.curve): a tiny run keeps its snapshot epochs, scores each one as it
is written, and the record names the epoch the budget rule gives. No AUROC is asserted."""

from __future__ import annotations

import json

from train_fixtures import make_mvtec_tree

from bench.records import curve


def _overrides(root) -> list[str]:
    """The smoke profile on the tiny two-category tree, every image used."""
    return [f"data_root={root}", "categories=[stripes, waves]", "max_train_images_per_category=null",
            "max_test_images_per_category=null", "batch_size=4"]


def test_a_tiny_run_keeps_and_scores_every_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    root = make_mvtec_tree(tmp_path / "data", n_train=10)
    out = tmp_path / "out"
    overrides = _overrides(root)
    record = curve.measure("smoke", 5, 0, "complementary", out, overrides)
    assert record["snapshots"] == [1, 2, 5]
    assert [p["epoch"] for p in record["points"]] == [1, 2, 5]
    assert record["status"] == "finished"
    split = record["data"]["holdout"]["categories"]
    assert {c: (v["train"], v["held_out"]) for c, v in split.items()} == {"stripes": (8, 2), "waves": (8, 2)}
    seen = [p["images_seen"] for p in record["points"]]
    assert seen == [16, 32, 80]  # four fifths of 2 x 10 images per epoch
    for point in record["points"]:
        assert point["held_out_error"]["mean"] > 0
        assert set(point["per_category"]) == {"stripes", "waves"}
        stripes, waves = point["per_category"]["stripes"], point["per_category"]["waves"]
        assert all(0.0 <= stripes[k] <= 1.0
                   for k in ("default", "eq1", "feature_nn", "pixel", "default_random_views"))
        assert waves["pixel"] is None  # waves has no masks
    errors = [(p["epoch"], p["held_out_error"]["mean"]) for p in record["points"]]
    assert record["learned"]["epochs"] == curve.budget_rule.learned_budget({0: errors})["epochs"]
    saved = json.loads((out / "curve-smoke-complementary-seed0.json").read_text())
    assert saved["points"] == record["points"]
    text = (out / "curve-smoke-complementary-seed0.md").read_text()
    assert "| 5 |" in text and "budget rule" in text


def test_the_held_out_fifth_is_linked_not_copied_and_never_in_training(tmp_path):
    root = make_mvtec_tree(tmp_path / "data", n_train=10)
    split = curve.build_holdout_root(root, ["stripes"], tmp_path / "holdout")
    train = {p.name for p in (tmp_path / "holdout/stripes/train/good").iterdir()}
    held = {p.name for p in (tmp_path / "holdout/stripes/test/good").iterdir()}
    assert len(train) == 8 and len(held) == 2 and not train & held
    assert held == set(split["stripes"]["held_out_files"])
    assert all(p.is_symlink() for p in (tmp_path / "holdout/stripes/test/good").iterdir())


def test_finishing_a_record_adds_the_detectors_and_a_reconstruction_strip(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    root = make_mvtec_tree(tmp_path / "data", n_train=10)
    out = tmp_path / "out"
    overrides = _overrides(root)
    curve.measure("smoke", 2, 0, "random", out, overrides)
    assert curve.main(["--finish", str(out / "curve-smoke-random-seed0.json")]) == 0
    record = json.loads((out / "curve-smoke-random-seed0.json").read_text())
    assert set(record["detectors"]) >= {"gaussian", "nn", "patch_nn", "brightness", "mean_colour"}
    assert set(record["detectors"]["nn"]) == {"stripes", "waves"}
    assert 0.0 <= record["detectors"]["nn"]["stripes"]["auroc"] <= 1.0
    assert record["points"][0]["per_category"]["stripes"]["default_complementary_views"] is not None
    png = out / record["reconstructions_png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_curve_figure_has_a_panel_per_category_the_detector_line_and_the_papers_mark():
    import matplotlib

    matplotlib.use("Agg")
    from maskad_core.study.figures import compute_curve_figure

    def point(epoch, value):
        cell = {"default": value, "default_random_views": value - 0.1, "default_complementary_views": value,
                "eq1": 0.5, "feature_nn": 0.6, "pixel": None}
        return {"epoch": epoch, "per_category": {"bottle": cell, "screw": cell, "kolektor_sdd": cell}}

    record = {"data": {"categories": ["bottle", "kolektor_sdd", "screw"],
                       "holdout": {"categories": {c: {"train": 100, "held_out": 25}
                                                  for c in ("bottle", "kolektor_sdd", "screw")}}},
              "points": [point(1, 0.6), point(10, 0.7)],
              "detectors": {"nn": {"bottle": {"auroc": 0.98}, "screw": {"auroc": 0.4},
                                   "kolektor_sdd": {"auroc": 0.7}},
                            "brightness": {"bottle": {"auroc": 0.5}, "screw": {"auroc": 0.9},
                                           "kolektor_sdd": {"auroc": None}}}}
    fig = compute_curve_figure({"complementary": record, "random": record}, paper_epochs=1000)
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["bottle", "kolektor_sdd", "screw"]
    bottle, kolektor, screw = panels
    assert 0.98 in [line.get_ydata()[0] for line in bottle.get_lines()]  # nn, the best floor on bottle
    assert 0.4 in [line.get_ydata()[0] for line in screw.get_lines()]  # nn: the probe brightness sets no bar
    assert 0.9 not in [line.get_ydata()[0] for line in screw.get_lines()]
    stars = [line for line in bottle.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_xdata()[0] == 1000 * 125  # the paper's budget
    assert not [line for line in kolektor.get_lines() if line.get_marker() == "*"]  # not in Table 1
    assert bottle.get_xscale() == "log" and fig.dpi == 150
