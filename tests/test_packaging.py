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
    assert data["project"]["scripts"]["maskad"] == "maskad_core.cli:main"
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


def test_make_targets_behind_the_readme_commands_install_first():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("book", "study", "test"):
        rule = re.search(rf"^{target}:(.*)$", makefile, re.M)
        assert rule and "install" in rule.group(1).split(), f"make {target} must depend on install"
    assert 'pip install -q -e ".[dev]"' in makefile
    assert "$(PYTHON) -m venv $(VENV)" in makefile and "VENV ?= .venv" in makefile  # not the system Python
