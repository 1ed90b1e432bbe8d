"""maskad_core.study.report: what the notebooks state beside their numbers, and what they compute."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pandas as pd
import pytest
import torch
from train_fixtures import tiny_config

from maskad_core.data.mvtec import MVTecAD
from maskad_core.model import build_model
from maskad_core.study import comparison, paper, profiles, report


# --------------------------------------------------------------------------- provenance
def test_data_descriptions_never_call_synthetic_data_mvtec(data_root):
    config = profiles.train_config(profiles.load_profile("smoke"))
    assert report.is_synthetic(config) and not report.is_mvtec(config)
    assert report.data_label(config) == "synthetic, not MVTec AD"
    assert "not MVTec AD" in report.data_description(config)
    real = profiles.train_config(profiles.load_profile("mvtec"), categories=["bottle", "screw"])
    assert not report.is_synthetic(real) and report.is_mvtec(real)
    assert report.data_label(real) == "MVTec AD"
    assert report.data_description(real).startswith("MVTec AD (2 of its 15")
    assert str(real.data_root) not in report.data_description(real)  # no machine path in the book
    own = tiny_config(data_root)  # categories stripes and waves: MVTec AD's layout, not its images
    assert report.data_label(own) == "user data, not MVTec AD"
    assert "(not MVTec AD); 2 categories: stripes, waves" in report.data_description(own)


def test_provenance_names_data_model_budget_hardware_seed_and_profile():
    config = profiles.train_config(profiles.load_profile("smoke"))
    line = report.provenance(config, profile="smoke", device="cpu")
    for fragment in ("data: the embedded synthetic set", "model: E2D4, encoder 32 wide (2 heads)",
                     "budget: 2 epochs, batch 16, AdamW lr 0.001, at most 8 training images per "
                     "category, 32 px, complementary masking r = 0.75", "hardware: CPU ", "seed 0",
                     "profile 'smoke'"):
        assert fragment in line, fragment
    assert report.budget_description(config, masking=False).endswith("32 px")
    derivation = report.derivation_provenance(config, 224, 16, "brick / crack", profile="smoke")
    assert derivation.startswith("masking identities: 224 px, 16 px patches (L = 196), seed 0; "
                                 "image: brick / crack; trained model: data: ")


def test_budget_vs_paper_says_whether_the_budget_is_the_papers():
    smoke = profiles.train_config(profiles.load_profile("smoke"))
    assert "This is a reduced budget, not the paper's setting" in report.budget_vs_paper(smoke)
    papers = profiles.train_config(profiles.load_profile("paper"), data_root="/data/mvtec_ad")
    assert report.budget_vs_paper(papers).endswith("This is the paper's budget.")
    assert report.loss_weights(smoke) == {"ssim": smoke.ssim_weight, "l1": smoke.l1_weight,
                                          "lpips": smoke.lpips_weight}


def test_ablation_configs_and_provenance_follow_the_grid():
    base = profiles.train_config(profiles.load_profile("smoke"), warmup_epochs=2, epochs=5)
    cells = report.ablation_configs(base, ["E2D2", "E6D6"], [0.5, 0.75], epochs=1)
    assert list(cells) == [("E2D2", 0.5), ("E2D2", 0.75), ("E6D6", 0.5), ("E6D6", 0.75)]
    config = cells[("E6D6", 0.75)]
    assert (config.depth, config.decoder_depth, config.mask_ratio) == (6, 6, 0.75)
    assert (config.epochs, config.warmup_epochs) == (1, 1)  # warmup cut to the cell's epochs
    assert config.embed_dim == base.embed_dim and config.categories == base.categories
    line = report.ablation_provenance(cells, profile="smoke")
    assert line.startswith("Table 2 grid E2D2, E6D6 x r in [0.5, 0.75], complementary masking")
    assert "budget per cell: 1 epochs" in line and "profile 'smoke'" in line


def test_training_stages_are_initial_then_the_kept_epochs():
    config = profiles.train_config(profiles.load_profile("smoke"))

    class FakeRun:  # a run that kept epochs 1 and 2, or none (from before snapshots)
        def __init__(self, kept):
            self.config, self.kept, self.loaded = config, kept, []

        def snapshots(self):
            return self.kept

        def load_model(self, epoch=None):
            self.loaded.append(epoch)
            return build_model(config)

    assert list(report.training_stages(FakeRun([1, 2]))) == ["initial", "epoch 1", "epoch 2"]
    old = FakeRun([])
    assert list(report.training_stages(old)) == ["initial", "trained"] and old.loaded == [None]
    # the initial model is the run's seed, untrained: the same weights every time
    first, second = (report.training_stages(FakeRun([]))["initial"] for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


def test_setup_notebook_sets_the_books_figure_resolution():
    plt = report.setup_notebook()
    assert plt.rcParams["figure.dpi"] == 150 and plt.rcParams["savefig.dpi"] == 150
    assert plt.rcParams["figure.figsize"][0] * 150 >= 1200  # sharp when scaled to the book's column
    assert plt.rcParams["font.size"] >= 10


# --------------------------------------------------------------------------- notebook 01
@pytest.mark.parametrize(("k", "ratio", "patches"), [(1, 0.75, 196), (4, 0.75, 196), (3, 0.5, 16),
                                                     (2, 0.9, 196)])
def test_closed_form_is_the_product_formula(k, ratio, patches):
    m = round(ratio * patches)
    product = math.prod((patches - m - j) / (patches - j) for j in range(k))
    assert report.p_defect_visible(k, ratio, patches) == pytest.approx(product, rel=1e-12)
    assert report.p_defect_visible(k, ratio, patches) == comb(patches - k, m) / comb(patches, m)


def test_closed_form_edge_cases_and_table():
    assert report.p_defect_visible(1, 0.75, 196) == 0.25
    assert report.p_defect_visible(5, 0.75, 16) == 0.0  # 12 masked of 16: 5 cannot all stay visible
    assert report.masked_count(1.0, 10) == 9  # as random_masks: one patch stays visible
    table = report.closed_form_table(196, [0.5, 0.75], range(1, 5))
    assert list(table.columns) == ["r = 0.5", "r = 0.75"] and list(table.index) == [1, 2, 3, 4]
    assert table.loc[1, "r = 0.75"] == 0.25 and (table.diff().dropna() < 0).all().all()


def test_simulation_agrees_with_the_closed_form():
    records = report.simulate_defect_visible(196, [0.5, 0.75], [1, 2], 3000, torch.Generator().manual_seed(0))
    assert [(r["r"], r["k"]) for r in records] == [(0.5, 1), (0.5, 2), (0.75, 1), (0.75, 2)]
    for record in records:
        assert record["m"] == round(record["r"] * 196) and record["trials"] == 3000
        assert record["closed_form"] == report.p_defect_visible(record["k"], record["r"], 196)
        assert abs(record["z"]) < 4.5


def test_defect_visibility_copies_visible_defects_through(data_root):
    """An untrained random-mask model copies its visible patches: zero error on the visible part of
    a defect, some on the masked part; only images with a non-empty mask are counted."""
    random_config = tiny_config(data_root, masking="random")
    complementary_config = tiny_config(data_root)
    test_set = MVTecAD(data_root, categories=["stripes"], split="test", image_size=32)
    defective = [i for i, s in enumerate(test_set.samples) if s.label == 1 and s.has_mask]
    torch.manual_seed(0)
    frame, examples = report.defect_visibility(
        test_set, defective, random=(build_model(random_config).eval(), random_config),
        complementary=(build_model(complementary_config).eval(), complementary_config),
        device=torch.device("cpu"), keep=2, batch_size=2)
    assert list(frame["index"]) == defective and len(defective) == 3
    assert frame["defect_visible_fraction"].between(0, 1).all()
    visible = frame["random: error on visible defect"].dropna()
    assert (visible == 0.0).all() and frame["random: error on masked defect"].dropna().gt(0).all()
    assert frame["complementary: error on defect"].gt(0).all()
    top = frame.sort_values("defect_visible_fraction", ascending=False, kind="stable")["index"][:2]
    assert list(examples) == list(top)  # the two most visible defects, most visible first
    image, defect, seen, random_map, complementary_map = examples[top.iloc[0]]
    assert image.shape == (3, 32, 32) and defect.dtype == torch.bool and random_map.shape == (32, 32)
    assert float(random_map[defect & (seen > 0.5)].sum()) == 0.0


# --------------------------------------------------------------------------- notebook 04
def test_interval_verdicts_need_separated_intervals():
    assert comparison.interval_verdict([0.9, 0.95], [0.8, 0.89]) == "higher"
    assert comparison.interval_verdict([0.7, 0.8], [0.81, 0.9]) == "lower"
    assert comparison.interval_verdict([0.7, 0.85], [0.8, 0.9]) == "not resolved"
    assert comparison.interval_verdict(None, [0.8, 0.9]) == "-"
    assert comparison.format_interval([0.81234, 0.9]) == "[0.812, 0.900]"
    assert comparison.format_interval([float("nan"), float("nan")]) == "-"


def test_table2_grid_has_the_papers_shape_with_nan_where_not_run():
    results = {("E2D4", 0.75): 0.8, ("E2D2", 0.5): 0.6}
    grid = report.table2_grid(results)
    assert grid.shape == paper.table2().shape and list(grid.columns) == list(paper.table2().columns)
    assert grid.loc[0.75, "E2D4"] == 0.8 and grid.loc[0.5, "E2D2"] == 0.6
    assert int(grid.notna().sum().sum()) == 2
    not_run = report.cells_not_run(results)
    assert len(not_run) == 22 and "E2D4@0.75" not in not_run and "E12D8@0.9" in not_run
    assert report.paper_best_cell() == ("E2D4", 0.75, 0.895)
    assert report.cell_name("E2D4", 0.5) == "E2D4@0.5"


# --------------------------------------------------------------------------- notebook 06
def test_histogram_statistics_per_category():
    scores = pd.DataFrame({
        "category": ["a"] * 6 + ["b"] * 4,
        "label": [0, 0, 0, 1, 1, 1, 0, 1, 0, 1],
        "score_eq1": [0.0, 0.1, 0.2, 0.2, 0.9, 1.0, 0.0, 0.0, 1.0, 1.0],
    })
    edges, normal, anomalous, overlap = report.score_histogram(scores[scores.category == "a"], bins=2)
    assert np.allclose(edges, [0.0, 0.5, 1.0])
    assert list(normal) == [3, 0] and list(anomalous) == [1, 2] and list(overlap) == [1, 0]
    statistics = report.histogram_statistics(scores, bins=2)
    assert statistics.loc["a", "top_bin_anomalous_fraction"] == 1.0
    assert statistics.loc["a", "overlap_fraction"] == pytest.approx(2 / 6)
    assert statistics.loc["b", "top_bin_anomalous_fraction"] == 0.5  # top bin: one of each
    assert statistics.loc["b", "overlap_fraction"] == 1.0
    # the top quarter (one image of a's six: score 1.0, anomalous) against the base rate 3/6
    assert statistics.loc["a", "top_quarter_anomalous_fraction"] == 1.0
    assert statistics.loc["a", "base_rate"] == 0.5


def test_the_spread_rule_names_a_difference_only_beyond_both_spreads():
    from maskad_core.study.comparison import spread_verdict

    assert spread_verdict([0.80, 0.82, 0.84], 0.70) == "higher"  # 0.82 - 0.02 > 0.70
    assert spread_verdict([0.80, 0.82, 0.84], 0.81) == "level"
    assert spread_verdict([0.70, 0.71, 0.72], [0.80, 0.81, 0.82]) == "lower"
    assert spread_verdict([0.70, 0.75, 0.80], [0.80, 0.81, 0.82]) == "level"  # 0.75 + 0.05 >= 0.80
    assert spread_verdict(0.9, float("nan")) == "-"


def test_mvtec_rows_beside_other_real_data_are_labelled_each_for_what_it_is(tmp_path):
    from train_fixtures import make_mvtec_tree

    root = make_mvtec_tree(tmp_path / "data")
    (root / "stripes").rename(root / "bottle")  # a real (non-generated) folder named as MVTec AD's
    (root / "waves").rename(root / "kolektor_sdd")
    config = tiny_config(root, categories=["bottle", "kolektor_sdd"])
    assert report.mvtec_categories(config) == ["bottle"]
    assert report.has_mvtec(config) and not report.is_mvtec(config)
    described = report.data_description(config)
    assert "MVTec AD bottle (official test split)" in described
    assert "kolektor_sdd (not MVTec AD: outside the paper's Table 1)" in described
    assert report.data_label(config) == "MVTec AD and other real data"


def test_lpips_is_said_in_words_without_the_loaders_error():
    raw = "Can't load weights from /root/.cache/torch/hub (set TORCH_HOME)"
    assert report.lpips_words(False, raw) == "LPIPS off: its AlexNet weights were not available; departs from eq. 4"
    assert "lpips='off'" in report.lpips_words(False, "LPIPS switched off (lpips='off')")
    assert report.lpips_words(True, "") == "LPIPS on, as in eq. 4"


def test_recorded_provenance_loses_its_folders():
    from maskad_core.study import recipe_log

    line = "data: real images at /work/shared/data: MVTec AD bottle; seed 0"
    assert recipe_log._without_paths(line) == "data: real images: MVTec AD bottle; seed 0"
