"""The committed reference editions render into the whole book with no training, and are current."""

import os
import shutil
from pathlib import Path

from maskad_core.study import edition
from maskad_core.study import runner as study

REPO = Path(__file__).resolve().parents[1]
EDITIONS = sorted((REPO / "book").glob("executed*"))


def test_both_reference_editions_are_committed_with_their_record():
    assert [p.name for p in EDITIONS] == ["executed", "executed-real"]
    for folder, profile in zip(EDITIONS, ("cpu", "real"), strict=True):
        record = edition.read_edition(folder)
        assert record is not None, f"{folder} has no {edition.EDITION_FILE}"
        assert record["profile"] == profile and set(record["fingerprint"]) == {
            "code", "notebooks", "parameters"}
        assert {p.stem for p in folder.glob("*.ipynb")} == set(study.NOTEBOOKS)
    size = sum(p.stat().st_size for folder in EDITIONS for p in folder.rglob("*"))
    assert size < 15 * 2**20, f"the committed editions take {size / 2**20:.1f} MiB"


def test_a_fresh_clone_renders_the_book_from_the_editions_without_training(tmp_path, monkeypatch):
    root = tmp_path / "clone"
    for name in (*study.BOOK_SOURCES, "notebooks"):  # what a clone holds that the book reads
        source = REPO / name
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    home = tmp_path / "home"
    monkeypatch.setenv("MASKAD_HOME", str(home))
    html = study.build_book_html(root, log=lambda _: None)  # -W -n: fails on any warning
    assert (html / "book" / "executed-real" / "04_table1.html").is_file()
    assert (html / "book" / "executed" / "04_table1.html").is_file()
    assert not (home / "runs").exists() or not os.listdir(home / "runs"), "the build trained a run"
    intro = (html / "book" / "intro.html").read_text(encoding="utf8")
    # whether current or stale, the page says which editions it shows
    assert "the cpu edition of" in intro and "the real edition of" in intro
