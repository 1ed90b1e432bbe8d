"""The study pipeline: profiles, notebook parameters, run_study's failure report, the book build."""

from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path

import jupytext
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from maskad_core.losses import ReconstructionLoss
from maskad_core.masking import make_masks
from maskad_core.model import build_model
from maskad_core.study import paper, profiles
from maskad_core.study import runner as study
from maskad_core.training.config import FIELD_NAMES, TrainConfig
from maskad_core.training.train import make_optimizer

NOTEBOOK_DIR = study.notebooks_dir()


def declared(name: str) -> dict:
    return study.notebook_parameters(study.notebook_source(name))


def test_profiles_are_the_six_named_ones():
    assert profiles.profile_names() == ["smoke", "cpu", "mvtec", "real", "paper", "lab"]
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
    from maskad_core.cli.main import main

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
        hidden = {"hide-input", "remove-input"} & set(setup.metadata.get("tags", []))
        assert hidden and len(setup.source.splitlines()) <= 40, name
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
    with pytest.raises(ValueError, match="available profiles: smoke, cpu, mvtec, real, paper"):
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


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes): equal snapshots, byte-identical folders."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _old_edition(root: Path) -> Path:
    """A committed edition as the study finds it: old notebooks, EDITION.json and a file of its own."""
    executed = root / "book" / "executed"
    executed.mkdir(parents=True)
    for name in ("02_complementary_masking", "03_training"):
        (executed / f"{name}.ipynb").write_text(f'{{"old": "{name}"}}\n')
    (executed / "EDITION.json").write_text('{"profile": "smoke", "old": true}\n')
    (executed / "README.txt").write_text("not a notebook\n")
    return executed


def test_a_failing_notebook_stops_the_study_and_leaves_the_edition_as_it_was(tmp_path, monkeypatch):
    """Changed with the all-or-nothing study: the notebooks executed before the failing one no
    longer land in the edition; the failed copy is kept outside it and the message names it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system_tmp"))
    (tmp_path / "system_tmp").mkdir()
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _write_tiny_notebook(notebooks / "02_complementary_masking.md", "print('fine', profile)")
    _write_tiny_notebook(notebooks / "03_training.md", "ratio = 1 / 0")
    _write_tiny_notebook(notebooks / "04_table1.md", "print('never run')")
    executed = _old_edition(tmp_path)
    before = snapshot(executed)
    with pytest.raises(study.StudyError) as caught:
        study.run_study("smoke", root=tmp_path, build_book=False, log=lambda m: None,
                        notebooks=["02_complementary_masking", "03_training", "04_table1"])
    message = str(caught.value)
    assert "notebook 03_training failed in cell" in message
    assert "ZeroDivisionError" in message and "ratio = 1 / 0" in message
    assert caught.value.notebook == "03_training"
    assert snapshot(executed) == before  # 02 succeeded, yet the edition is byte-identical
    assert sorted(p.name for p in (tmp_path / "book").iterdir()) == ["executed"]  # no temporary folder
    kept = [p for p in (tmp_path / "system_tmp").rglob("03_training.ipynb")]
    assert len(kept) == 1 and f"the failed copy of the notebook: {kept[0]}" in message
    assert "ZeroDivisionError" in kept[0].read_text()  # the failed copy shows the error
    assert not list((tmp_path / "system_tmp").rglob("04_table1.ipynb"))  # later ones were not run


def _stage_sources(root: Path) -> None:
    """The seven notebook sources (no book), for studies whose execution is patched."""
    (root / "notebooks").mkdir(parents=True)
    for name in study.NOTEBOOKS:
        shutil.copy(study.notebook_source(name), study.notebook_source(name, root))


def _fake_execution(fail_at: str | None = None, error: type[BaseException] = study.StudyError):
    """An execute_notebook that writes a small notebook for each call and fails at ``fail_at``
    (after writing a partial copy, as papermill does)."""
    calls = []

    def execute(source, output, params, **options):
        calls.append(source.stem)
        output.write_text(f'{{"new": "{source.stem}", "epochs": {params["epochs"]}}}\n')
        if source.stem == fail_at:
            if error is study.StudyError:
                raise study.StudyError(f"notebook {fail_at} failed in cell 3 (In [2]): Boom: no\n"
                                       f"(partially executed copy: {output})", notebook=fail_at,
                                       cell_index=3)
            raise error()
        return output

    return execute, calls


@pytest.mark.parametrize("error", [study.StudyError, KeyboardInterrupt])
def test_a_failure_or_an_interrupt_mid_study_leaves_the_edition_byte_identical(tmp_path, monkeypatch,
                                                                               error):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system_tmp"))
    (tmp_path / "system_tmp").mkdir()
    root = tmp_path / "root"
    _stage_sources(root)
    executed = _old_edition(root)
    before = snapshot(executed)
    execute, calls = _fake_execution(fail_at=study.EXECUTION_ORDER[1], error=error)
    monkeypatch.setattr(study, "execute_notebook", execute)
    with pytest.raises(error) as caught:
        study.run_study("smoke", root=root, build_book=False, log=lambda m: None)
    assert calls == list(study.EXECUTION_ORDER[:2])  # the first succeeded, the second failed
    assert snapshot(executed) == before
    assert sorted(p.name for p in (root / "book").iterdir()) == ["executed"]
    if error is study.StudyError:
        kept = next((tmp_path / "system_tmp").rglob(f"{study.EXECUTION_ORDER[1]}.ipynb"))
        assert f"the failed copy of the notebook: {kept}" in str(caught.value)
        assert str(executed) in str(caught.value) and "left as it was" in str(caught.value)


def test_a_study_replaces_the_edition_files_only_after_every_notebook_succeeded(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _stage_sources(root)
    executed = _old_edition(root)
    execute, calls = _fake_execution()
    monkeypatch.setattr(study, "execute_notebook", execute)
    subset = ["03_training"]  # a subset replaces just its files: no EDITION.json
    result = study.run_study("smoke", root=root, build_book=False, log=lambda m: None,
                             notebooks=subset, overrides=["epochs=3"])
    assert result.executed == [executed / "03_training.ipynb"]
    assert '"new": "03_training", "epochs": 3' in (executed / "03_training.ipynb").read_text()
    assert '"old"' in (executed / "02_complementary_masking.ipynb").read_text()
    assert '"old": true' in (executed / "EDITION.json").read_text()
    result = study.run_study("smoke", root=root, build_book=False, log=lambda m: None)
    assert [p.stem for p in result.executed] == list(study.EXECUTION_ORDER)
    assert all('"new"' in (executed / f"{name}.ipynb").read_text() for name in study.NOTEBOOKS)
    assert '"profile": "smoke"' in (executed / "EDITION.json").read_text()
    assert (executed / "README.txt").read_text() == "not a notebook\n"  # the edition's own files stay
    assert sorted(p.name for p in (root / "book").iterdir()) == ["executed"]


def _no_kernel(*args, **kwargs):
    raise AssertionError("a kernel was started although the parameters were invalid")


@pytest.mark.parametrize("override, message", [
    ("epochs=abc", "bad value 'abc' for epochs: expected an integer"),
    ("simulation_trials=abc", "bad value 'abc' for simulation_trials: expected an integer"),
    ("ablation_ratios=a,b", "bad value 'a,b' for ablation_ratios: expected a list of numbers"),
    ("data_root=", "data_root=null for the generated"),
    ("histogram_bins=", r"write histogram_bins=VALUE \(the profile's value: histogram_bins=10\)"),
    ("image_size=30", "image_size 30 is not a multiple of patch_size 8"),
    ("lr=nan", "lr must be a finite number"),
])
def test_bad_parameters_are_refused_before_any_kernel_and_the_edition_stays(tmp_path, monkeypatch,
                                                                           override, message):
    root = tmp_path / "root"
    _stage_sources(root)
    executed = _old_edition(root)
    before = snapshot(executed)
    monkeypatch.setattr(study, "execute_notebook", _no_kernel)
    with pytest.raises(ValueError, match=message):
        study.run_study("smoke", root=root, build_book=False, log=lambda m: None,
                        overrides=[override])
    assert snapshot(executed) == before
    assert sorted(p.name for p in (root / "book").iterdir()) == ["executed"]


def test_a_data_root_that_is_not_a_folder_is_refused_naming_the_resolved_path(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "execute_notebook", _no_kernel)
    missing = tmp_path / "no_such_data"
    with pytest.raises(ValueError, match=f"{missing} does not exist"):
        study.run_study("smoke", root=tmp_path, build_book=False, overrides=[f"data_root={missing}"])
    with pytest.raises(ValueError, match="does not exist"):
        profiles.study_parameters("mvtec", ["data_root=../no_such_folder_here"])


def test_maskad_study_with_a_bad_value_fails_before_a_kernel_starts(tmp_path, monkeypatch, capsys):
    from maskad_core.cli.main import main

    root = tmp_path / "root"
    _stage_sources(root)
    executed = _old_edition(root)
    before = snapshot(executed)
    monkeypatch.setattr(study, "execute_notebook", _no_kernel)
    assert main(["study", "--profile", "smoke", "-p", "epochs=abc", "--no-build",
                 "--root", str(root)]) == 2
    assert "bad value 'abc' for epochs: expected an integer" in capsys.readouterr().err
    assert snapshot(executed) == before


@pytest.mark.parametrize("word", ["none", "null", "~", "None", "NULL"])
def test_data_root_none_means_the_generated_set_in_study_and_train_alike(word):
    assert profiles.load_profile("mvtec", [f"data_root={word}"])["data_root"] is None
    assert profiles.study_parameters("mvtec", [f"data_root={word}"])["data_root"] is None
    assert TrainConfig().with_overrides([f"data_root={word}"]).data_root is None
    assert profiles.parse_overrides([f"data_root={word}"]) == {"data_root": None}


def test_a_list_parameter_reads_alike_with_commas_or_brackets():
    commas = profiles.load_profile("smoke", ["ablation_ratios=0.5,0.75"])["ablation_ratios"]
    brackets = profiles.load_profile("smoke", ["ablation_ratios=[0.5, 0.75]"])["ablation_ratios"]
    assert commas == brackets == [0.5, 0.75]
    assert all(type(ratio) is float for ratio in commas + brackets)
    assert profiles.load_profile("smoke", ["ablation_ratios=1,0.5"])["ablation_ratios"] == [1.0, 0.5]
    assert profiles.load_profile("smoke", ["ablation_depths=E2D2"])["ablation_depths"] == ["E2D2"]
    assert profiles.load_profile("smoke", {"ablation_depths": ["E2D4"]})["ablation_depths"] == ["E2D4"]


@pytest.mark.parametrize("item", [
    "data_root=none", "data_root=null", "categories=bottle", "categories=screw,bottle",
    "categories=[screw, bottle]", "categories=01,'02'", "max_test_images_per_category=~",
    "max_train_images_per_category=4", "lr=1e-3", "lr=1", "warmup_epochs=2", "epochs=1e1",
    "map_standardization=none", "anomaly_map=l2", "smooth_sigma=0",
])
def test_the_same_text_gives_the_same_value_to_train_and_to_the_study(item):
    key = item.partition("=")[0]
    trained = getattr(TrainConfig().with_overrides([item]), key)
    studied = profiles.load_profile("smoke", [item])[key]
    assert studied == trained and type(studied) is type(trained), (studied, trained)


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
    line = 'report.histogram_statistics(scores, histogram_bins).style.format("{:.3f}")'
    assert sentence in text and line in text
    text = text.replace(sentence, "Edited by a teacher: blue bars are normal images")
    text = text.replace(line, "print('a teacher was here')\n" + line)
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
        # the recipe chapter reads the quality record, the same in every edition: built once, from
        # the real edition (_config.yml excludes the generated set's copy)
        edition = "executed-real" if name == "07_making_it_detect" else "executed"
        page = smoke_study.html_dir / "book" / edition / f"{name}.html"
        assert page.is_file(), name
    assert not (smoke_study.html_dir / "book" / "executed" / "07_making_it_detect.html").exists()
    # the smoke study's time is reported by the fixture, not asserted: speed belongs to bench/


def test_maskad_study_command_help_and_errors(capsys):
    from maskad_core.cli.main import main

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
    assert main(["study", "--profile", "smoke", "-p", "data_root=", "--no-build"]) == 2
    assert "data_root=null" in capsys.readouterr().err
