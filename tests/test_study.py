"""The study pipeline: profiles, notebook parameters, run_study's failure report, the book build."""

from __future__ import annotations

import ast
import shutil

import jupytext
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from maskad_core import paper, profiles, study
from maskad_core.config import FIELD_NAMES
from maskad_core.losses import ReconstructionLoss
from maskad_core.masking import make_masks
from maskad_core.model import build_model
from maskad_core.train import make_optimizer

NOTEBOOK_DIR = study.notebooks_dir()


def declared(name: str) -> dict:
    return study.notebook_parameters(study.notebook_source(name))


def test_profiles_are_the_four_named_ones():
    assert profiles.profile_names() == ["smoke", "cpu", "mvtec", "paper"]
    for name in profiles.profile_names():
        assert profiles.profile_description(name)


def test_every_profile_key_is_a_notebook_parameter_and_every_parameter_is_in_every_profile():
    parameters = {name: declared(name) for name in study.NOTEBOOKS}
    union = set().union(*parameters.values())
    for profile in profiles.profile_names():
        keys = set(profiles.load_profile(profile))
        assert keys == union, profile  # nothing a notebook would silently ignore, nothing missing
        for name, params in parameters.items():
            assert "profile" in params and set(params) <= keys, (profile, name, set(params) - keys)


def test_every_parameter_has_a_comment_and_the_smoke_default():
    smoke = profiles.load_profile("smoke")
    for name in study.NOTEBOOKS:
        for key, spec in declared(name).items():
            assert spec["help"], (name, key)
            assert ast.literal_eval(spec["default"]) == smoke[key], (name, key)


def test_help_notebook_lists_every_parameter_with_its_comment(capsys):
    from maskad_core.cli import main

    for name in study.NOTEBOOKS:
        assert main(["study", "--help-notebook", name]) == 0
        shown = capsys.readouterr().out
        for key, spec in declared(name).items():
            assert f"  {key} = {spec['default']}" in shown and spec["help"] in shown, (name, key)
    assert main(["study", "--help-notebook", "07_extra"]) == 2
    assert "no notebook '07_extra'" in capsys.readouterr().err


def test_notebook_sources_are_myst_markdown_with_one_title_and_one_parameters_cell():
    assert sorted(p.name for p in NOTEBOOK_DIR.iterdir() if p.suffix in (".ipynb", ".py")) == [], \
        "notebooks/ holds only the Markdown sources: no generator, no generated notebooks"
    for name in study.NOTEBOOKS:
        text = study.notebook_source(name).read_text()
        assert text.startswith("---\njupytext:") and "format_name: myst" in text, name
        notebook = jupytext.reads(text, fmt="md:myst")
        assert notebook.metadata["kernelspec"]["name"] == "python3", name
        code = [c for c in notebook.cells if c.cell_type == "code"]
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and code[0] is tagged[0], name
        headings = [line for c in notebook.cells if c.cell_type == "markdown"
                    for line in c.source.splitlines() if line.startswith("# ")]
        assert len(headings) == 1, name  # one title per page of the book
        setup = code[1]  # imports and configuration: short, hidden on the rendered page
        assert "hide-input" in setup.metadata.get("tags", []) and len(setup.source.splitlines()) <= 20, name
        assert all("sys.path" not in c.source for c in code), name  # the package is installed


def test_paper_profile_is_the_papers_setting():
    params = profiles.load_profile("paper")
    setting = paper.setting()
    assert params["image_size"] == setting["image_size"] == 224
    assert (params["depth"], params["decoder_depth"]) == paper.parse_depths("E2D4")
    assert params["mask_ratio"] == setting["mask_ratio"] == 0.75
    assert params["epochs"] == setting["epochs"] == 1000
    assert params["batch_size"] == setting["batch_size"] == 16
    assert params["lr"] == setting["lr"] == 1e-3
    assert params["warmup_epochs"] == setting["warmup_epochs"] == 10
    assert params["categories"] == list(paper.MVTEC_CATEGORIES) and len(params["categories"]) == 15
    assert (params["embed_dim"], params["num_heads"]) == (768, 12)  # ViT-Base-like
    config = profiles.train_config(params, data_root="/data/mvtec_ad")
    assert config.masking == "complementary" and config.num_views == 4
    assert config.image_size // config.patch_size == 14  # 196 patches


def test_paper_profile_takes_one_training_step_on_tiny_data():
    params = profiles.load_profile("paper")
    tiny = dict(image_size=32, patch_size=8, embed_dim=32, num_heads=2, decoder_embed_dim=32,
                decoder_num_heads=2)
    config = profiles.train_config(params, data_root="/data/mvtec_ad", **tiny)
    assert (config.depth, config.decoder_depth, config.mask_ratio, config.lr) == (2, 4, 0.75, 1e-3)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    criterion = ReconstructionLoss(config.ssim_weight, config.l1_weight, config.lpips_weight, lpips="off")
    images = torch.rand(2, 3, 32, 32)
    masks = torch.stack([make_masks(config.masking, model.num_patches, config.mask_ratio) for _ in range(2)])
    before = [p.detach().clone() for p in model.parameters()]
    views = model.predict_views(images, masks)
    loss, _ = criterion(model.combine_views(images, views, masks), images)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_paper_profile_needs_a_data_root():
    with pytest.raises(ValueError, match="data_root"):
        study.run_study("paper", build_book=False)


def test_profile_and_override_errors_name_the_problem():
    with pytest.raises(ValueError, match="available profiles: smoke, cpu, mvtec, paper"):
        profiles.load_profile("gpu")
    with pytest.raises(ValueError, match="unknown study parameter 'epoch'"):
        profiles.load_profile("smoke", ["epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        profiles.parse_overrides(["epochs"])
    params = profiles.load_profile("smoke", ["epochs=3", "categories=[brick, nut]", "data_root=null"])
    assert params["epochs"] == 3 and params["categories"] == ["brick", "nut"]
    assert params["data_root"] is None
    with pytest.raises(ValueError, match="unknown notebook"):
        study.run_study("smoke", notebooks=["07_extra"], build_book=False)


def test_profile_training_keys_are_valid_config_settings():
    for name in profiles.profile_names():
        params = profiles.load_profile(name)
        config = profiles.train_config(params, data_root=params["data_root"] or None)
        for key in set(params) & set(FIELD_NAMES) - {"data_root"}:
            assert getattr(config, key) == params[key] or key == "categories", (name, key)


def _write_tiny_notebook(path, source: str) -> None:
    parameters = new_code_cell("profile = 'smoke'  # profile name")
    parameters.metadata["tags"] = ["parameters"]
    notebook = new_notebook(cells=[new_markdown_cell("# Tiny"), parameters, new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(notebook, path, fmt="md:myst")


def test_a_failing_notebook_stops_the_study_naming_notebook_cell_and_error(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_tiny_notebook(notebooks / "02_complementary_masking.md", "print('fine', profile)")
    _write_tiny_notebook(notebooks / "03_training.md", "ratio = 1 / 0")
    _write_tiny_notebook(notebooks / "04_table1.md", "print('never run')")
    with pytest.raises(study.StudyError) as caught:
        study.run_study("smoke", root=tmp_path, build_book=False, log=lambda m: None,
                        notebooks=["02_complementary_masking", "03_training", "04_table1"])
    message = str(caught.value)
    assert "notebook 03_training failed in cell" in message
    assert "ZeroDivisionError" in message and "ratio = 1 / 0" in message
    assert caught.value.notebook == "03_training"
    executed = tmp_path / "book" / "executed"
    assert (executed / "02_complementary_masking.ipynb").is_file()  # earlier results stay
    assert not (executed / "04_table1.ipynb").exists()  # later ones were not run


def test_a_teachers_edit_of_a_notebook_source_is_what_the_study_executes(smoke_study, tmp_path,
                                                                         monkeypatch):
    """Change a sentence and a line of code in a notebook's Markdown source, run the study: the
    executed notebook shows both (the smoke study's runs are re-used, so no training)."""
    root = tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    source = root / "notebooks" / "06_figure3_histograms.md"
    shutil.copy(study.notebook_source("06_figure3_histograms"), source)
    text = source.read_text()
    sentence = "Bars: normal images (blue), anomalous images (orange)"
    assert sentence in text and "fig_roc, axis = plt.subplots(figsize=(5, 4.5))" in text
    text = text.replace(sentence, "Edited by a teacher: blue bars are normal images")
    text = text.replace("fig_roc, axis = plt.subplots(figsize=(5, 4.5))",
                        "fig_roc, axis = plt.subplots(figsize=(5, 4.5))\nprint('a teacher was here')")
    source.write_text(text)
    monkeypatch.setenv("MASKAD_HOME", str(smoke_study.maskad_home))
    study.run_study("smoke", root=root, build_book=False, log=lambda m: None,
                    notebooks=["06_figure3_histograms"])
    executed = jupytext.read(root / "book" / "executed" / "06_figure3_histograms.ipynb")
    markdown = "\n".join(c.source for c in executed.cells if c.cell_type == "markdown")
    assert "Edited by a teacher: blue bars are normal images" in markdown
    printed = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert any("a teacher was here" in text for text in printed)
    assert executed.metadata["papermill"]["parameters"]["histogram_bins"] == profiles.load_profile("smoke")["histogram_bins"]
    assert "jupytext" not in executed.metadata  # a plain executed notebook, not paired with a text file


def test_stage_book_sources_copies_the_book_but_not_executed_notebooks(tmp_path):
    source = tmp_path / "repo"
    (source / "book" / "executed").mkdir(parents=True)
    (source / "book" / "executed" / "old.ipynb").write_text("{}")
    (source / "book" / "intro.md").write_text("# Intro\n")
    (source / "_config.yml").write_text("title: t\n")
    (source / "notebooks").mkdir()
    (source / "notebooks" / "01_x.md").write_text("# X\n")
    dest = study.stage_book_sources(tmp_path / "staged", source)
    assert (dest / "book" / "intro.md").is_file() and (dest / "_config.yml").is_file()
    assert (dest / "notebooks" / "01_x.md").is_file()
    assert not (dest / "book" / "executed").exists()
    assert not (dest / "_toc.yml").exists()  # absent sources are skipped, not invented


def test_smoke_study_builds_the_book(smoke_study):
    assert (smoke_study.root / "_config.yml").is_file(), "book sources were not staged"
    assert smoke_study.book_error is None, smoke_study.book_error
    assert (smoke_study.html_dir / "index.html").is_file()
    for name in study.NOTEBOOKS:
        page = smoke_study.html_dir / "book" / "executed" / f"{name}.html"
        assert page.is_file(), name
    # the smoke study's time is reported by the fixture, not asserted: speed belongs to bench/


def test_maskad_study_command_help_and_errors(capsys):
    from maskad_core.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["study", "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for option in ("--profile", "--no-build", "--parameter", "--notebooks", "--help-notebook"):
        assert option in shown
    for profile in profiles.profile_names():
        assert f"{profile}: " in shown
    assert main(["study", "--profile", "paper", "--no-build"]) == 2
    assert "needs data_root" in capsys.readouterr().err
    assert main(["study", "--profile", "smoke", "-p", "epoch=3", "--no-build"]) == 2
    assert "unknown study parameter 'epoch'" in capsys.readouterr().err
