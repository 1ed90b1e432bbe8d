"""Editions: a fingerprint of what produced the executed notebooks, and staleness both ways."""

import json

import pytest

from maskad_core.study import edition, profiles


@pytest.fixture
def made(tmp_path):
    """An edition of the smoke profile written for notebooks in a temporary folder."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "01_a.md").write_text("# A\n")
    executed = tmp_path / "executed"
    edition.write_edition(executed, "smoke", profiles.load_profile("smoke"), notebooks,
                          {"01_a": 1.23}, "CPU test")
    return executed, notebooks


def test_a_fresh_edition_is_current(made):
    executed, notebooks = made
    assert edition.stale_parts(executed, notebooks) == []
    record = edition.read_edition(executed)
    assert record["profile"] == "smoke" and record["seconds"] == {"01_a": 1.2}
    assert "committed with it" in edition.staleness_message([], record)


def test_an_edited_notebook_or_changed_parameters_are_reported(made):
    executed, notebooks = made
    (notebooks / "01_a.md").write_text("# A, edited\n")
    assert edition.stale_parts(executed, notebooks) == ["notebooks"]
    path = executed / edition.EDITION_FILE
    record = json.loads(path.read_text())
    record["fingerprint"]["parameters"] = edition.fingerprint(
        profiles.load_profile("smoke", {"epochs": 99}), notebooks)["parameters"]
    path.write_text(json.dumps(record))
    parts = edition.stale_parts(executed, notebooks)
    assert parts == ["notebooks", "parameters"]
    message = edition.staleness_message(parts, record)
    assert "other notebooks, parameters" in message and "make study" in message


def test_changed_code_is_reported(made, monkeypatch, tmp_path):
    executed, notebooks = made
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(edition, "PACKAGE_DIR", package)
    assert edition.stale_parts(executed, notebooks) == ["code"]


def test_no_edition_is_none_and_says_so(tmp_path):
    assert edition.stale_parts(tmp_path / "nothing", tmp_path) is None
    assert "No reference edition" in edition.staleness_message(None, None)


def test_a_figure_shown_and_glued_is_stored_once(tmp_path):
    import nbformat

    from maskad_core.study.runner import GLUE_PREFIX, keep_one_copy_of_glued_figures, read_glue

    cell = nbformat.v4.new_code_cell("plt.show(); glue('fig', fig, display=False)")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "AAA", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={GLUE_PREFIX + "image/png": "AAA",
                                                     GLUE_PREFIX + "text/plain": "<Figure>"},
                               metadata={"scrapbook": {"name": "fig", "mime_prefix": GLUE_PREFIX}}),
        nbformat.v4.new_output("display_data", data={"image/png": "BBB"}),  # not glued: kept
    ]
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), str(path))
    assert keep_one_copy_of_glued_figures(path) == 1
    outputs = nbformat.read(str(path), as_version=4).cells[0].outputs
    images = [o["data"]["image/png"] for o in outputs]
    assert images == ["AAA", "BBB"]  # one copy each
    assert outputs[0]["metadata"]["scrapbook"] == {"name": "fig", "mime_prefix": ""}  # shown and glued
    assert read_glue(path)["fig"]["image/png"] == "AAA"
    assert keep_one_copy_of_glued_figures(path) == 0  # idempotent
