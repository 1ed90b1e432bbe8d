"""Session fixtures shared by the study, notebook and book tests."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from maskad_core.study import runner as study


@dataclass
class SmokeStudy:
    """The smoke profile's study, executed once per test session in a temporary root."""

    root: Path  # staged book root: _config.yml, _toc.yml, book/, notebooks/
    executed_dir: Path  # <root>/book/executed/<name>.ipynb
    html_dir: Path | None  # <root>/_build/html, None when the book was not built
    maskad_home: Path  # MASKAD_HOME used while executing (runs/, data/)
    seconds: dict = field(default_factory=dict)  # per notebook, "book", and "total"
    book_error: str | None = None  # the build's error when it failed (tests of the book assert on it)

    def notebook(self, name: str) -> Path:
        return self.executed_dir / f"{name}.ipynb"


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> SmokeStudy:
    """run_study("smoke") into a temporary root with its own MASKAD_HOME; the book is built there
    when its sources exist. A failing notebook fails every test that uses this fixture."""
    base = tmp_path_factory.mktemp("smoke_study")
    root = study.stage_book_sources(base / "root")
    home = base / "maskad_home"
    previous = os.environ.get("MASKAD_HOME")
    os.environ["MASKAD_HOME"] = str(home)  # restored at once: other tests keep their own home
    started = time.perf_counter()
    try:
        result = study.run_study("smoke", root=root, build_book=False, log=lambda message: None)
    finally:
        if previous is None:
            os.environ.pop("MASKAD_HOME", None)
        else:
            os.environ["MASKAD_HOME"] = previous
    smoke = SmokeStudy(root=root, executed_dir=result.executed_dir, html_dir=None, maskad_home=home,
                       seconds=dict(result.seconds))
    if (root / "_config.yml").is_file():
        book_started = time.perf_counter()
        try:
            smoke.html_dir = study.build_book_html(root, log=lambda message: None)
        except study.StudyError as error:
            smoke.book_error = str(error)
        smoke.seconds["book"] = time.perf_counter() - book_started
    smoke.seconds["total"] = time.perf_counter() - started
    return smoke


# -- shared by the training, run and CLI tests
@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh MASKAD_HOME, so runs and generated data never touch the user's cache."""
    monkeypatch.setenv("MASKAD_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A tiny two-category MVTec-layout tree (see train_fixtures.make_mvtec_tree)."""
    from train_fixtures import make_mvtec_tree

    return make_mvtec_tree(tmp_path_factory.mktemp("mvtec"))
