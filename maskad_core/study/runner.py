"""The study: named parameter profiles, the seven notebooks executed with papermill, the book built.

The notebooks' sources are MyST Markdown (``notebooks/NAME.md``, jupytext's ``md:myst``), the files
people edit. ``run_study("cpu")`` converts each to a notebook, executes it with papermill and the
profile's parameters into ``<root>/book/executed/NAME.ipynb`` (the book's source tree) and then runs
``jupyter-book build <root> -W -n --keep-going``. A study is all or nothing: the parameters are
checked before any kernel starts, the notebooks are executed into a temporary folder beside the
edition and replace its files only once every one of them succeeded. Trained models are shared through
:func:`maskad_core.training.train.train`, which re-uses a finished run with the same configuration, so a
second invocation only re-executes the (cheap) notebook code and re-renders the book.

The profiles are :mod:`maskad_core.study.profiles`; the notebooks build their training configuration
with :func:`maskad_core.study.profiles.train_config`, and what they state beside their numbers comes
from :mod:`maskad_core.study.report`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maskad_core.data.paths import SOURCE_ROOT
from maskad_core.study.glue import GLUE_PREFIX as GLUE_PREFIX  # re-exported: the study's readers
from maskad_core.study.glue import glued_value as glued_value
from maskad_core.study.glue import keep_one_copy_of_glued_figures
from maskad_core.study.glue import read_glue as read_glue
from maskad_core.study.profiles import executed_dir as profile_executed_dir
from maskad_core.study.profiles import profile_description, profile_names, study_parameters

#: The notebooks in book order (file stems under ``notebooks/``).
NOTEBOOKS = (
    "01_mae_baseline_failure",
    "02_complementary_masking",
    "03_training",
    "04_table1",
    "05_table2_ablation",
    "06_figure3_histograms",
    "07_making_it_detect",
)
#: The order they are executed in: 03 trains the main model that 04, 05, 06 and 01 re-use.
EXECUTION_ORDER = (
    "03_training",
    "02_complementary_masking",
    "04_table1",
    "05_table2_ablation",
    "06_figure3_histograms",
    "01_mae_baseline_failure",
    "07_making_it_detect",
)
#: What the book build needs besides the executed notebooks (owned by the book's authors).
# the package too, whole: chapter 02 shows the method's files with literalinclude, and a partial
# maskad_core/ folder in the staged root would shadow the installed package as a namespace package
BOOK_SOURCES = ("_config.yml", "_toc.yml", "references.bib", "book", "bench/results", "maskad_core")
NOTEBOOK_SUFFIX = ".md"
HTML_SUBDIR = Path("_build") / "html"


class StudyError(RuntimeError):
    """A step of the study failed; the message names the notebook, the cell and the error."""

    def __init__(self, message: str, *, notebook: str | None = None, cell_index: int | None = None):
        super().__init__(message)
        self.notebook = notebook
        self.cell_index = cell_index


@dataclass
class StudyResult:
    root: Path
    executed_dir: Path
    html_dir: Path | None
    executed: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per notebook, and "book"


# --------------------------------------------------------------------------- notebooks
KERNEL_ENV = ("PYTHONPATH", "PYTHONWARNINGS")  # set for the notebooks' kernels, restored after
IPROGRESS_WARNING = "ignore:IProgress not found"

def notebooks_dir(root: Path | None = None) -> Path:
    return Path(root or SOURCE_ROOT) / "notebooks"


def notebook_source(name: str, root: Path | None = None) -> Path:
    """The editable source of a notebook: ``<root>/notebooks/<name>.md``."""
    return notebooks_dir(root) / f"{name}{NOTEBOOK_SUFFIX}"


def read_notebook(path: str | Path):
    """A notebook source (MyST Markdown, or any format jupytext reads) as an nbformat notebook.

    The jupytext metadata is dropped: the executed copy is a plain notebook, not paired with a text file.
    """
    import jupytext

    notebook = jupytext.read(str(path))
    notebook.metadata.pop("jupytext", None)
    return notebook


def notebook_parameters(path: str | Path) -> dict[str, dict]:
    """The parameters declared in a notebook's ``parameters`` cell: name -> {default, help, type}.

    Read as papermill reads them (its Python translator), from the source papermill will execute.
    """
    from papermill.translators import PythonTranslator

    cells = [c for c in read_notebook(path).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise StudyError(f"{path}: {len(cells)} cells are tagged 'parameters'; papermill needs one")
    return {p.name: {"default": p.default, "help": p.help, "type": p.inferred_type_name}
            for p in PythonTranslator.inspect(cells[0])}


def notebook_help(name: str, root: Path | None = None) -> str:
    """Every parameter of a notebook with its default and comment (``maskad study --help-notebook``)."""
    source = Path(name) if Path(name).suffix else notebook_source(name, root)
    if not source.is_file():
        raise StudyError(f"no notebook {name!r}: {source} does not exist; notebooks: {', '.join(NOTEBOOKS)}")
    lines = [f"Parameters of {source.stem} ({source}):"]
    for key, spec in notebook_parameters(source).items():
        lines.append(f"  {key} = {spec['default']}")
        lines.append(f"      {spec['help']}")
    return "\n".join(lines)


def stage_book_sources(dest: str | Path, source_root: str | Path | None = None) -> Path:
    """Copy the book's sources and the notebooks into ``dest`` (for tests and trial builds).

    ``book/executed`` is not copied: executing the notebooks fills it. Missing sources are skipped
    (the book may not be written yet); ``run_study`` then only executes the notebooks.
    """
    source_root = Path(source_root or SOURCE_ROOT)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        source = source_root / name
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(
                source, dest / name, dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("executed", "__pycache__", ".ipynb_checkpoints"),
            )
        elif source.is_file():
            shutil.copy2(source, dest / name)
    shutil.copytree(
        notebooks_dir(source_root), notebooks_dir(dest), dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"),
    )
    return dest


def execute_notebook(
    source: Path, output: Path, params: Mapping, *, kernel_name: str = "python3",
    log_output: bool = False,
) -> Path:
    """Execute one notebook source with the parameters it declares; StudyError names the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    declared = notebook_parameters(source)
    passed = {key: value for key, value in params.items() if key in declared}
    output.parent.mkdir(parents=True, exist_ok=True)
    env_before = {name: os.environ.get(name) for name in KERNEL_ENV}
    # The kernel imports this very package, wherever the notebooks were staged.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env_before["PYTHONPATH"]]))
    # tqdm.auto (imported by a dependency) warns on import without ipywidgets: a line of noise
    # on every page, since the notebooks show no progress bars
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [IPROGRESS_WARNING, env_before["PYTHONWARNINGS"]]))
    try:
        papermill.execute_notebook(
            read_notebook(source), str(output), parameters=passed, kernel_name=kernel_name,
            progress_bar=False, log_output=log_output, cwd=str(source.parent),
        )
    except PapermillExecutionError as error:
        source_lines = (error.source or "").strip().splitlines()
        snippet = "\n".join(source_lines[:6]) + ("\n..." if len(source_lines) > 6 else "")
        raise StudyError(
            f"notebook {source.stem} failed in cell {error.cell_index} (In [{error.exec_count}]): "
            f"{error.ename}: {error.evalue}\n--- cell source ---\n{snippet}\n"
            f"(partially executed copy: {output})",
            notebook=source.stem, cell_index=error.cell_index,
        ) from None
    finally:
        for name, value in env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    keep_one_copy_of_glued_figures(output)
    return output


def build_book_html(root: str | Path, *, log: Callable[[str], None] = print) -> Path:
    """``jupyter-book build <root> -W -n --keep-going``; StudyError with the log tail if it fails."""
    root = Path(root)
    if not (root / "_config.yml").is_file():
        raise StudyError(f"cannot build the book: {root / '_config.yml'} does not exist")
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
               "build", str(root), "-W", "-n", "--keep-going"]
    log(f"building the book: jupyter-book build {root} -W -n --keep-going")
    completed = subprocess.run(command, capture_output=True, text=True, cwd=root)
    if completed.returncode != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", completed.stdout + "\n" + completed.stderr)
        problems = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
        tail = "\n".join(problems[:40] or text.strip().splitlines()[-40:])
        raise StudyError(f"the book build failed (exit {completed.returncode}):\n{tail}")
    return root / HTML_SUBDIR


def run_study(
    profile: str,
    *,
    root: str | Path | None = None,
    executed_dir: str | Path | None = None,
    build_book: bool = True,
    overrides: Mapping | Iterable[str] | None = None,
    notebooks: Iterable[str] | None = None,
    kernel_name: str = "python3",
    log_output: bool = False,
    log: Callable[[str], None] = print,
) -> StudyResult:
    """Execute the notebooks with ``profile``'s parameters, then build the book.

    root: the book's root (``_config.yml``, ``notebooks/``); default the repository.
    executed_dir: the edition folder; default the profile's under ``root`` (``book/executed``, or
    ``book/executed-mvtec`` for the mvtec profile: what ``_toc.yml`` lists).
    notebooks: a subset of :data:`NOTEBOOKS` (stems); default all, in :data:`EXECUTION_ORDER`.

    Bad parameters are a ValueError before any kernel starts
    (:func:`maskad_core.study.profiles.study_parameters`). The notebooks are executed into a temporary
    folder beside ``executed_dir``; only when every selected one succeeded do they (and, for the
    whole study, ``EDITION.json``) replace the edition's files. A failing notebook raises
    :class:`StudyError` naming it, its failing cell, the error and where its failed copy was kept
    (outside the edition); a failure or an interrupt leaves ``executed_dir`` as it was.
    """
    root = Path(root or SOURCE_ROOT).resolve()
    executed_dir = Path(executed_dir) if executed_dir else root / profile_executed_dir(profile)
    params = study_parameters(profile, overrides)
    selected = list(EXECUTION_ORDER) if notebooks is None else list(notebooks)
    unknown = [name for name in selected if name not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook {unknown[0]!r}; notebooks: {', '.join(NOTEBOOKS)}")
    sources = {name: notebook_source(name, root) for name in selected}
    for name, source in sources.items():
        if not source.is_file():
            raise StudyError(f"notebook {name}: {source} does not exist", notebook=name)
    result = StudyResult(root=root, executed_dir=executed_dir, html_dir=None)
    execute_edition(profile, params, sources, result, whole=notebooks is None,
                    kernel_name=kernel_name, log_output=log_output, log=log)
    if build_book:
        start = time.perf_counter()
        result.html_dir = build_book_html(root, log=log)
        result.seconds["book"] = time.perf_counter() - start
        log(f"book built in {result.seconds['book']:.1f} s: {result.html_dir / 'index.html'}")
    return result


def execute_edition(profile: str, params: Mapping, sources: Mapping[str, Path], result: StudyResult,
                    *, whole: bool, kernel_name: str = "python3", log_output: bool = False,
                    log: Callable[[str], None] = print) -> None:
    """Execute ``sources`` (name -> notebook source, in order) into a temporary folder beside
    ``result.executed_dir``, then move them (and EDITION.json when ``whole``) into it; the
    temporary folder is removed whatever happens, so a failure leaves the edition untouched."""
    edition = result.executed_dir
    edition.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{edition.name}-running-", dir=edition.parent))
    try:
        for name, source in sources.items():
            log(f"[{profile}] executing {name} ...")
            start = time.perf_counter()
            output = staging / f"{name}.ipynb"
            try:
                execute_notebook(source, output, params, kernel_name=kernel_name,
                                 log_output=log_output)
            except StudyError as error:
                raise failed_copy_error(error, output, edition) from None
            result.seconds[name] = time.perf_counter() - start
            log(f"[{profile}] {name} done in {result.seconds[name]:.1f} s")
        if whole:  # a whole edition: record what produced it
            from maskad_core.study.edition import write_edition
            from maskad_core.study.report import hardware_description

            write_edition(staging, profile, params, notebooks_dir(result.root),
                          result.seconds, hardware_description())
        result.executed = replace_edition_files(staging, edition, list(sources))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_edition_files(staging: Path, edition: Path, names: Iterable[str]) -> list[Path]:
    """Move ``staging``'s notebooks ``names`` (and its EDITION.json, if any) into ``edition``, each
    file replaced at once (``os.replace``: same file system); the edition's other files stay."""
    from maskad_core.study.edition import EDITION_FILE

    edition.mkdir(parents=True, exist_ok=True)
    moved = []
    for file_name in [f"{name}.ipynb" for name in names] + [EDITION_FILE]:
        if (staging / file_name).is_file():
            os.replace(staging / file_name, edition / file_name)
            moved.append(edition / file_name)
    return [path for path in moved if path.suffix == ".ipynb"]


def failed_copy_error(error: StudyError, output: Path, edition: Path) -> StudyError:
    """``error`` with the failed notebook kept outside the edition (under the system's temporary
    folder, which the study's temporary folder is not) and the message naming that copy."""
    if output.is_file():
        kept = Path(tempfile.mkdtemp(prefix=f"maskad-study-failed-{output.stem}-")) / output.name
        shutil.copy2(output, kept)
        where = f"the failed copy of the notebook: {kept}"
    else:
        where = "no executed copy of the notebook was written"
    message = str(error).replace(f"(partially executed copy: {output})", "").rstrip()
    return StudyError(f"{message}\n{where}\n(the edition in {edition} was left as it was)",
                      notebook=error.notebook, cell_index=error.cell_index)


# --------------------------------------------------------------------------- command line
def register_study(subparsers) -> None:
    """``maskad study --profile NAME [--no-build] [-p key=value ...]`` (added to maskad_core.cli.main)."""
    import argparse

    lines = [f"  {name}: {' '.join(profile_description(name).split())}" for name in profile_names()]
    parser = subparsers.add_parser(
        "study", help="run the seven notebooks with a profile's parameters, then build the book",
        description="Execute notebooks/*.md with papermill into book/executed/ and build the book "
                    "(jupyter-book build . -W -n --keep-going). Finished training runs are re-used, "
                    "so a second invocation only re-executes the notebooks and re-renders.",
        epilog="profiles (maskad_core/study/profiles.yaml):\n" + "\n".join(lines),
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=32))
    parser.add_argument("--profile", default="cpu", choices=profile_names(),
                        help="parameter profile (default: cpu)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override one profile parameter, repeatable; values as in maskad "
                             "train: none/null for empty, a,b or [a, b] for lists")
    parser.add_argument("--no-build", action="store_true", help="execute the notebooks only")
    parser.add_argument("--notebooks", default=None,
                        help="comma-separated notebook names to execute (default: all seven)")
    parser.add_argument("--root", default=None,
                        help=f"book root holding _config.yml and notebooks/ (default: {SOURCE_ROOT})")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output")
    parser.add_argument("--help-notebook", metavar="NAME", default=None,
                        help="list a notebook's parameters with their defaults and meaning, then exit")
    parser.set_defaults(func=cmd_study)


def cmd_study(args) -> int:
    if args.help_notebook:
        try:
            print(notebook_help(args.help_notebook, args.root))
        except StudyError as error:
            print(f"maskad: error: {error}", file=sys.stderr)
            return 2
        return 0
    notebooks = [n.strip() for n in args.notebooks.split(",") if n.strip()] if args.notebooks else None
    try:
        result = run_study(args.profile, root=args.root, build_book=not args.no_build,
                           overrides=args.parameter, notebooks=notebooks, log_output=args.log_output)
    except StudyError as error:
        print(f"maskad: error: {error}", file=sys.stderr)
        return 1
    total = sum(result.seconds.values())
    print(f"study {args.profile!r} done in {total:.0f} s; executed notebooks: {result.executed_dir}")
    if result.html_dir is not None:
        print(f"book: {result.html_dir / 'index.html'}")
    return 0
