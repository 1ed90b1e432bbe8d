"""The repository's set-up stays true: one dependency list, README commands that CI runs."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def normalise(spec: str) -> tuple[str, str]:
    req = Requirement(spec)
    return re.sub(r"[-_.]+", "-", req.name).lower(), str(req.specifier)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = pyproject()["project"]
    declared = {normalise(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip: section"
    conda_pip = {normalise(s) for s in pip_lists[0] if not s.startswith("-e")}
    assert conda_pip == declared, (
        f"only in environment.yml: {sorted(conda_pip - declared)}; "
        f"only in pyproject.toml: {sorted(declared - conda_pip)}"
    )
    assert "-e ." in pip_lists[0], "environment.yml must install the package itself"


def test_pyproject_names_the_package_the_script_and_jupyter_book_1():
    data = pyproject()
    assert data["project"]["scripts"]["maskad"] == "maskad_core.cli.main:main"
    book = [normalise(s) for s in data["project"]["dependencies"] if s.startswith("jupyter-book")]
    assert book == [("jupyter-book", "<2,>=1.0.4.post1")]
    for needed in ("torch", "timm", "lpips", "pytorch-msssim", "pandas", "seaborn", "papermill",
                   "scikit-learn", "tqdm"):
        assert any(normalise(s)[0] == needed for s in data["project"]["dependencies"]), needed
    assert {normalise(s)[0] for s in data["project"]["optional-dependencies"]["dev"]} >= {
        "pytest", "hypothesis", "ruff"}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Three commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_has_exactly_three_setup_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert commands == ["make book", "make study", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert "make test" in ci_lines


def make_rule(target: str) -> tuple[list[str], list[str]]:
    """A Makefile rule: its prerequisites and its recipe lines (tabs stripped)."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", makefile, re.M)
    assert match, f"the Makefile has no rule for {target}"
    return match.group(1).split(), [line[1:] for line in match.group(2).splitlines()]


def test_make_targets_behind_the_readme_commands_install_first():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("study", "test"):
        assert "install" in make_rule(target)[0], f"make {target} must depend on install"
    assert make_rule("book")[0] == ["book-install"], "make book installs the light book environment"
    assert 'pip install -q -e ".[dev]"' in makefile
    assert "$(PYTHON) -m venv $(VENV)" in makefile and "VENV ?= .venv" in makefile  # not the system Python
    assert "$(PYTHON) -m venv $(BOOK_VENV)" in makefile


# ------------------------------------------------------------------ the light book build (no torch)
BOOK_REQUIREMENTS = ROOT / "book" / "requirements.txt"
# Distributions that are torch or need it: none may be installed by `make book`, even indirectly.
TORCH_STACK = {"torch", "torchvision", "timm", "lpips", "pytorch-msssim", "maskad"}
# What the book's configuration (_config.yml) and its extension need beyond the standard library.
BOOK_NEEDS = {"jupyter-book", "sphinxcontrib-bibtex", "sphinx-mathjax-offline", "pandas", "pyyaml"}


def book_requirements() -> dict[str, str]:
    """book/requirements.txt: normalised name -> specifier. Only named requirements (no -e, -r,
    paths or URLs: the package itself would bring torch with it)."""
    lines = [line.split("#", 1)[0].strip() for line in BOOK_REQUIREMENTS.read_text().splitlines()]
    requirements = {}
    for line in filter(None, lines):
        assert not line.startswith("-") and "/" not in line and line != ".", (
            f"book/requirements.txt: {line!r} is not a named requirement")
        name, specifier = normalise(line)
        requirements[name] = specifier
    return requirements


def test_make_book_installs_the_book_requirements_and_builds_with_them():
    prerequisites, recipe = make_rule("$(BOOK_VENV)/.installed")
    assert prerequisites == ["book/requirements.txt"]  # re-installed when the requirements change
    installs = [line for line in recipe if "pip install" in line]
    assert installs == ["$(BOOK_BIN)/python -m pip install -q -r book/requirements.txt"], installs
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^BOOK_VENV \?= (\S+)", makefile, re.M).group(1) == "_build/venv-book"
    assert "book-install: $(BOOK_VENV)/.installed" in makefile
    _, build = make_rule("book")
    assert build[0] == "$(BOOK_BIN)/jupyter-book build . -W -n --keep-going"
    # the book's venv lies where git ignores it and the book's sources exclude it
    assert "_build/" in (ROOT / ".gitignore").read_text().split()
    assert "_build" in yaml.safe_load((ROOT / "_config.yml").read_text())["exclude_patterns"]


def test_book_requirements_hold_what_the_build_needs_and_no_torch():
    requirements = book_requirements()
    assert not set(requirements) & TORCH_STACK, f"the book needs no torch: {requirements}"
    assert set(requirements) >= BOOK_NEEDS, f"missing: {sorted(BOOK_NEEDS - set(requirements))}"
    # the same specifiers as the full environment, so that both build the same book
    full = dict(normalise(s) for s in pyproject()["project"]["dependencies"])
    for name, specifier in requirements.items():
        assert full.get(name) == specifier, (
            f"book/requirements.txt has {name}{specifier}, pyproject.toml {name}{full.get(name)}")


def _dependency_closure(names) -> set[str]:
    """The installed distributions ``names`` pull in (Requires-Dist without extras, recursively)."""
    from importlib import metadata

    from packaging.markers import default_environment

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**default_environment(), "extra": ""}):
                continue
            todo.append(re.sub(r"[-_.]+", "-", req.name).lower())
    return seen


def test_book_requirements_pull_in_no_torch_and_cover_the_extensions_imports():
    """Resolved against this (full) environment: nothing the book installs depends on torch, and
    every third-party module that the extension imports (anywhere in it), and that the maskad_core
    modules it imports import when imported (at module level), comes with the book's requirements.
    What the build actually calls is run without torch by the next test."""
    import ast
    import sys
    from importlib import metadata

    closure = _dependency_closure(book_requirements())
    assert not closure & TORCH_STACK, f"the book's requirements pull in {sorted(closure & TORCH_STACK)}"
    sources = [(ROOT / "book" / "_ext" / "maskad_book.py", True)]
    modules: set[str] = set()
    seen_local: set[str] = set()
    while sources:
        path, everywhere = sources.pop()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree) if everywhere else tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [])
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("maskad_core"):
                # ``from maskad_core.study import edition`` imports the submodule study/edition.py
                names += [f"{node.module}.{a.name}" for a in node.names
                          if (ROOT / node.module.replace(".", "/") / f"{a.name}.py").is_file()]
            for name in names:
                if name.startswith("maskad_core."):  # follow the package's own modules
                    if name not in seen_local:
                        seen_local.add(name)
                        stem = ROOT / name.replace(".", "/")
                        module_file = stem / "__init__.py" if stem.is_dir() else stem.with_suffix(".py")
                        sources.append((module_file, False))
                elif name != "maskad_core":
                    modules.add(name.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names)
    providers = metadata.packages_distributions()
    for module in sorted(third_party):
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [])}
        assert dists & closure, f"the book's extension imports {module}, which book/requirements.txt lacks"
    assert seen_local <= {"maskad_core.study", "maskad_core.study.paper", "maskad_core.study.edition",
                          "maskad_core.study.verdict", "maskad_core.study.comparison"}, (
        f"the book's extension imports {sorted(seen_local)}: maskad_core.training.config, .data and .profiles "
        "import torch; read what the book needs from the sources instead (see maskad_book.py)")


def test_the_book_extension_runs_without_torch(tmp_path):
    """Every substitution and the editions' status, in a process where importing torch fails."""
    script = f"""
import sys
from types import SimpleNamespace
for name in ("torch", "torchvision", "timm", "lpips", "pytorch_msssim"):
    sys.modules[name] = None  # import raises ImportError
sys.path.insert(0, {str(ROOT / "book" / "_ext")!r})
import maskad_book as mb
root = {str(ROOT)!r}
app = SimpleNamespace(srcdir=root)
config = SimpleNamespace(myst_substitutions={{}}, html_theme_options={{}})
mb.add_substitutions(app, config)
subs = config.myst_substitutions
assert subs["default_augment"] and subs["profiles_table"] and subs["paper_table1"], subs
assert "edition of" in subs["edition_status"], subs["edition_status"]
assert "**The budget**" in subs["verdict_box"], subs["verdict_box"]
print(len(subs), sorted(m for m in sys.modules if m.startswith("maskad_core")))
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "maskad_core.training.config" not in done.stdout


def test_what_the_extension_reads_from_the_sources_is_what_the_code_says(tmp_path):
    """The torch-free readers of maskad_book.py against the modules themselves (this environment
    has torch): TrainConfig's defaults, MVTecAD's augmentation strengths, the profiles, the
    editions' staleness."""
    import importlib
    import inspect
    import json
    import shutil
    import sys

    from maskad_core.data.mvtec import MVTecAD
    from maskad_core.study import edition, profiles
    from maskad_core.training.config import TrainConfig

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        ext = importlib.import_module("maskad_book")
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    read = ext.train_config_defaults()
    assert list(read.items()) == list(TrainConfig().to_dict().items())
    assert [type(v) for v in read.values()] == [type(v) for v in TrainConfig().to_dict().values()]
    signature = inspect.signature(MVTecAD.__init__).parameters
    assert ext.function_defaults("data.mvtec", "MVTecAD", "__init__") == {
        name: p.default for name, p in signature.items() if p.default is not inspect.Parameter.empty}
    assert ext.profile_names() == profiles.profile_names()
    for name in profiles.profile_names():
        assert ext.load_profile(name) == profiles.load_profile(name)
        assert ext.profile_description(name) == profiles.profile_description(name)
    notebooks = ROOT / "notebooks"
    for folder in sorted((ROOT / "book").glob("executed*")):
        assert ext.stale_parts(folder, notebooks) == edition.stale_parts(folder, notebooks)
        # a record of another profile and of other code: stale in the same parts
        record = json.loads((folder / edition.EDITION_FILE).read_text())
        changed = tmp_path / folder.name
        shutil.copytree(folder, changed)
        record["fingerprint"]["code"] = "0" * 64
        record["profile"] = "smoke"
        (changed / edition.EDITION_FILE).write_text(json.dumps(record))
        assert ext.stale_parts(changed, notebooks) == edition.stale_parts(changed, notebooks)
        assert {"code", "parameters"} <= set(ext.stale_parts(changed, notebooks))
    assert ext.stale_parts(tmp_path, notebooks) is edition.stale_parts(tmp_path, notebooks) is None
