"""The seven notebooks executed with the smoke profile: the values they glue, checked.

One session fixture (tests/conftest.py: smoke_study) executes them all once with papermill; these
tests read the glued values back from the executed .ipynb files (no scrapbook).
"""

from __future__ import annotations

import math
from html.parser import HTMLParser
from itertools import product
from math import comb

import nbformat
import pytest

from maskad_core.data.paths import SOURCE_ROOT
from maskad_core.study import profiles
from maskad_core.study import runner as study
from maskad_core.study.paper import parse_depths

SMOKE = profiles.load_profile("smoke")


def glue(smoke_study, notebook: str, name: str):
    return study.glued_value(smoke_study.notebook(notebook), name)


def is_unit_interval(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


class _TableShape(HTMLParser):
    """Rows and columns of the first pandas HTML table (body rows; header cells of the last row)."""

    def __init__(self):
        super().__init__()
        self.section, self.rows, self.header_cells, self._cells = None, 0, 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in ("thead", "tbody"):
            self.section = tag
        elif tag == "tr":
            self._cells = 0
        elif tag in ("th", "td"):
            self._cells += 1

    def handle_endtag(self, tag):
        if tag == "tr" and self.section == "tbody":
            self.rows += 1
        elif tag == "tr" and self.section == "thead":
            self.header_cells = max(self.header_cells, self._cells)


def table_shape(smoke_study, notebook: str, name: str) -> tuple[int, int]:
    glued = study.read_glue(smoke_study.notebook(notebook))[name]
    parser = _TableShape()
    parser.feed(glued["text/html"])
    return parser.rows, parser.header_cells - 1  # minus the index column


@pytest.mark.parametrize("name", study.NOTEBOOKS)
def test_every_notebook_ran_clean_and_states_its_provenance(smoke_study, name):
    path = smoke_study.notebook(name)
    notebook = nbformat.read(path, as_version=4)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    stderr = [o["text"] for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not any("IProgress not found" in text for text in stderr)  # no import noise on a page
    assert notebook.metadata["papermill"]["parameters"]["profile"] == "smoke"
    provenance = glue(smoke_study, name, f"nb{name[:2]}_provenance")
    fragments = ("not MVTec AD", "32 px", "seed 0", "hardware: ", "profile 'smoke'")
    if name == "07_making_it_detect":  # shows recorded benchmarks, and says so
        fragments = ("recorded measurements", "not MVTec AD", "seed 1", "hardware: ",
                     "profile 'smoke'", "MVTec AD (")
    for fragment in fragments:
        assert fragment in provenance, (name, fragment)


def test_notebook_02_identities_hold_exactly(smoke_study):
    name = "02_complementary_masking"
    checks = glue(smoke_study, name, "identity_checks")
    assert len(checks) >= 4 * 5 and all(value is True for value in checks.values()), checks
    assert glue(smoke_study, name, "all_identities_hold") is True
    assert glue(smoke_study, name, "views_per_ratio") == {0.5: 2, 0.75: 4, 0.8: 5, 0.9: 10}
    assert glue(smoke_study, name, "eq3_max_abs_error") <= 1e-6
    assert glue(smoke_study, name, "views_sum_to_image") is True
    uneven = glue(smoke_study, name, "uneven_visible_counts")
    assert set(uneven) == {5, 10}
    for n, counts in uneven.items():
        assert len(counts) == n and sum(counts) == 196 and max(counts) - min(counts) == 1
    assert glue(smoke_study, name, "uneven_partition_holds") is True
    glued = study.read_glue(smoke_study.notebook(name))
    assert "image/png" in glued["fig_complementary_views"] and "image/png" in glued["fig_model_views"]


def test_notebook_01_closed_form_matches_its_simulation(smoke_study):
    name = "01_mae_baseline_failure"
    records = glue(smoke_study, name, "closed_form_check")
    assert len(records) == 16
    for record in records:
        L, k, m = record["L"], record["k"], record["m"]
        assert m == round(record["r"] * L)
        expected = comb(L - k, m) / comb(L, m)
        assert record["closed_form"] == pytest.approx(expected, rel=1e-12)
        standard_error = math.sqrt(expected * (1 - expected) / record["trials"])
        assert abs(record["simulated"] - expected) <= 4.5 * standard_error + 1 / record["trials"]
    assert record["trials"] == SMOKE["simulation_trials"]
    assert glue(smoke_study, name, "p_visible_k1_r075") == 0.25
    assert glue(smoke_study, name, "closed_form_agrees") is True
    assert glue(smoke_study, name, "complementary_never_masked_patches") == 0


def test_notebook_01_visible_defects_are_copied_through(smoke_study):
    name = "01_mae_baseline_failure"
    # Random masking copies visible patches, so their error is exactly zero.
    assert glue(smoke_study, name, "random_error_visible_defect") == 0.0
    assert glue(smoke_study, name, "random_error_masked_defect") > 0.0
    assert glue(smoke_study, name, "complementary_error_defect") > 0.0
    assert 0.0 < glue(smoke_study, name, "defect_visible_fraction_mean") < 1.0
    for key in ("nb01_auroc_random", "nb01_auroc_complementary"):
        assert is_unit_interval(glue(smoke_study, name, key))
    # the same cached runs as the Table 1 notebook
    assert glue(smoke_study, name, "nb01_auroc_random") == glue(smoke_study, "04_table1",
                                                                "baseline_random_auroc")


def test_notebook_03_reports_its_training_run(smoke_study):
    name = "03_training"
    assert glue(smoke_study, name, "train_wall_time_s") > 0
    assert glue(smoke_study, name, "images_per_s") > 0
    assert isinstance(glue(smoke_study, name, "lpips_active"), bool)
    per_category = glue(smoke_study, name, "train_images_per_category")
    assert set(per_category.values()) == {SMOKE["max_train_images_per_category"]}
    assert glue(smoke_study, name, "train_images_seen") == SMOKE["epochs"] * sum(per_category.values())
    assert "not MVTec AD" in glue(smoke_study, name, "data_description")
    assert f"{SMOKE['epochs']} epochs" in glue(smoke_study, name, "budget_description")
    assert glue(smoke_study, name, "model_description").startswith("E2D4")
    glued = study.read_glue(smoke_study.notebook(name))
    assert "image/png" in glued["fig_loss_curves"] and "image/png" in glued["fig_reconstructions"]
    # reconstructions over training: initialisation, then every epoch whose weights the run kept
    from maskad_core.training.runs import snapshot_epochs

    assert glue(smoke_study, name, "reconstruction_stages") == ["initial"] + [
        f"epoch {e}" for e in snapshot_epochs(SMOKE["epochs"])]


def test_notebook_04_table1(smoke_study):
    name = "04_table1"
    by_category = glue(smoke_study, name, "table1_auroc_by_category")
    categories = len(by_category)
    assert categories == len(glue(smoke_study, "03_training", "train_images_per_category"))
    assert all(is_unit_interval(v) for v in by_category.values())
    assert glue(smoke_study, name, "t1_n_seeds") == len(SMOKE["seeds"])
    mean = glue(smoke_study, name, "t1_mean_mean")
    assert mean == glue(smoke_study, name, "table1_mean_auroc")  # one value under both names
    assert mean == pytest.approx(sum(by_category.values()) / categories, abs=2e-3)
    assert is_unit_interval(glue(smoke_study, name, "t1_mean_random_mean"))
    low, high = map(float, glue(smoke_study, name, "t1_mean_interval").strip("[]").split(","))
    assert low <= mean <= high
    assert glue(smoke_study, name, "t1_mean_verdict") in ("higher", "lower", "level")
    # synthetic data: the text says the paper's numbers are not comparable, and states no gap
    assert "NOT comparable" in glue(smoke_study, name, "table1_comparability")
    assert "no gap" in glue(smoke_study, name, "t1_gap_statement")
    # category, then: test images, ours, interval, eq. 1, random, paired difference, verdict (no
    # paper column: no row of the generated set is comparable with the paper's)
    assert table_shape(smoke_study, name, "table1_frame") == (categories + 1, 7)
    words = [glue(smoke_study, name, f"t1_floor_{w}") for w in ("higher", "level", "lower")]
    assert sum(words) == categories  # every category gets one verdict against the best detector
    assert glue(smoke_study, name, "t1_pixel_categories") == categories  # the generated set has masks
    assert glue(smoke_study, name, "control_run") is False  # the smoke profile runs no control
    html = study.read_glue(smoke_study.notebook(name))["table1_frame"]["text/html"]
    assert ">nan<" not in html and ">None<" not in html and "eq. 1" in html


def test_notebook_05_grid_is_the_profiles_corner(smoke_study):
    name = "05_table2_ablation"
    expected = [f"{d}@{r:g}" for d, r in product(SMOKE["ablation_depths"], SMOKE["ablation_ratios"])]
    assert glue(smoke_study, name, "table2_cells_run") == expected
    by_cell = glue(smoke_study, name, "table2_auroc_by_cell")
    assert list(by_cell) == expected and all(is_unit_interval(v) for v in by_cell.values())
    assert len(glue(smoke_study, name, "table2_cells_not_run")) == 24 - len(expected)
    assert table_shape(smoke_study, name, "table2_frame") == (4, 6)
    assert glue(smoke_study, name, "table2_best_cell") in expected
    assert glue(smoke_study, name, "paper_table2_best_cell") == "E2D4@0.75"
    assert all(parse_depths(cell.split("@")[0]) for cell in expected)
    assert "image/png" in study.read_glue(smoke_study.notebook(name))["fig_table2_heatmap"]


def test_notebook_06_histograms_agree_with_table1(smoke_study):
    name = "06_figure3_histograms"
    fractions = glue(smoke_study, name, "top_bin_anomalous_fraction")
    assert all(0.0 <= v <= 1.0 for v in fractions.values())
    assert glue(smoke_study, name, "top_bin_mostly_anomalous_count") == sum(v > 0.5 for v in fractions.values())
    assert glue(smoke_study, name, "histogram_categories") == len(fractions)
    roc = glue(smoke_study, name, "roc_auroc_by_category")  # of eq. 1, the paper's score
    table1 = glue(smoke_study, "04_table1", "table1_auroc_by_category")
    assert set(roc) <= set(table1)
    from maskad_core.metrics import image_auroc
    from maskad_core.training.runs import Run

    runs = [Run(p) for p in (smoke_study.maskad_home / "runs").iterdir() if (p / "DONE").is_file()]
    main_run = next(r for r in runs if r.config == profiles.train_config(SMOKE))
    for category, part in main_run.scores.groupby("category"):
        if category in roc:
            assert roc[category] == pytest.approx(
                image_auroc(part["label"].to_numpy(), part["score_eq1"].to_numpy()), abs=1e-3)
    glued = study.read_glue(smoke_study.notebook(name))
    assert "image/png" in glued["fig_score_histograms"] and "image/png" in glued["fig_roc_curves"]


def test_notebooks_share_trained_runs(smoke_study):
    """Six notebooks, but only the distinct configurations are trained: main, baseline, grid cells."""
    runs = [p for p in (smoke_study.maskad_home / "runs").iterdir() if (p / "DONE").is_file()]
    cells = len(SMOKE["ablation_depths"]) * len(SMOKE["ablation_ratios"])
    assert len(runs) == 2 + cells


REAL_MVTEC = SOURCE_ROOT.parent / "shared" / "data" / "mvtec_ad"
TINY = dict(image_size=32, patch_size=8, embed_dim=32, num_heads=2, decoder_embed_dim=32,
            decoder_num_heads=2, epochs=1, warmup_epochs=1, max_train_images_per_category=4,
            max_test_images_per_category=10, simulation_trials=500, example_count=1, seeds=[0])


def test_mvtec_profile_puts_real_categories_beside_the_papers_rows(tmp_path, monkeypatch):
    """The mvtec profile's paths (paper columns, screw without masks) at a tiny budget."""
    if not (REAL_MVTEC / "bottle").is_dir():
        pytest.skip(f"MVTec AD categories not found at {REAL_MVTEC}")
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    for name in ("01_mae_baseline_failure", "04_table1"):
        study.notebook_source(name, root).write_bytes(study.notebook_source(name).read_bytes())
    result = study.run_study("mvtec", root=root, build_book=False, overrides=TINY, log=lambda m: None,
                             notebooks=["04_table1", "01_mae_baseline_failure"])
    table1 = result.executed_dir / "04_table1.ipynb"
    assert "comparable with the paper's rows" in study.glued_value(table1, "table1_comparability")
    by_category = study.glued_value(table1, "table1_auroc_by_category")
    assert set(by_category) == {"bottle", "screw", "transistor"}
    assert all(0.0 <= v <= 1.0 for v in by_category.values())
    html = study.read_glue(table1)["table1_frame"]["text/html"]
    assert "paper (Table 1)" in html and "eq. 1" in html
    assert "0.993" in html and "0.804" in html and "0.843" in html  # the paper's rows
    provenance = study.glued_value(table1, "nb04_provenance")
    assert "MVTec AD (" in provenance and "not MVTec AD" not in provenance
    assert 0.0 <= study.glued_value(table1, "t1_bottle_pixel_mean") <= 1.0  # bottle has masks
    assert study.glued_value(table1, "t1_pixel_categories") == 2  # screw has none here
    assert study.glued_value(table1, "t1_bottle_vs_paper") in ("higher", "lower", "level")
    failure = result.executed_dir / "01_mae_baseline_failure.ipynb"
    assert study.glued_value(failure, "random_error_visible_defect") == 0.0
    gaps = study.glued_value(table1, "t1_gap_statement")
    assert "bottle" in gaps and "screw" in gaps and "transistor" in gaps and "eq. 1" in gaps and "default score" in gaps
