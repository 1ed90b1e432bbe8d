"""One direction of imports: no module of maskad_core imports one that imports it back, and the
package never imports the benchmark (bench/ depends on maskad_core, not the reverse).

The imports are read with ast, at module level and inside functions alike, so a cycle hidden in a
function-level import (the usual way to dodge an ImportError) still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "maskad_core"
MAX_LINES = 400  # a module longer than this is split along its seams
MAX_FUNCTION_LINES = 60  # a function longer than this is split into named steps


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_names(path: Path, package: str) -> set[str]:
    """Every module name an import statement anywhere in the file names (relative ones resolved
    from ``package``); ``from X import Y`` names X.Y too, since Y may be a submodule."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of maskad_core it imports (a package's __init__ stands for the package)."""
    known = modules()
    return {name: {n for n in imported_names(path, package_of(path)) if n in known and n != name}
            for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None; depth-first search with three colours."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_imports_in_one_direction():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_package_never_imports_the_benchmark():
    offenders = {name: sorted(n for n in imported_names(path, package_of(path))
                              if n == "bench" or n.startswith("bench."))
                 for name, path in modules().items()}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_the_cycle_finder_finds_cycles_through_function_level_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from maskad_core.training.train import train\n"
                      "    from . import runs\n")
    assert {"maskad_core.training.train", "maskad_core.runs", "os"} <= imported_names(source, "maskad_core")


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """name -> lines of every function (or method) in the file longer than ``limit`` lines."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found[node.name] = length
    return found


def test_no_function_is_longer_than_60_lines():
    long = {name: found for name, path in modules().items() if (found := long_functions(path))}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_function_length_check_counts_lines(tmp_path):
    source = tmp_path / "m.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    source.write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions(source) == {"long": 61}


def test_no_module_is_longer_than_400_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# ------------------------------------------------------------------ the layers, folder by folder
METHOD = {"maskad_core.model", "maskad_core.masking", "maskad_core.losses", "maskad_core.scoring",
          "maskad_core.metrics"}
# folder -> the folders of maskad_core its modules may import ("" is the root's method modules)
ALLOWED = {
    "": {""},
    "data": {"", "data"},
    "training": {"", "data", "training"},
    "evaluation": {"", "data", "training", "evaluation"},
    "study": {"", "data", "training", "evaluation", "study"},
    "cli": {"", "data", "training", "evaluation", "study", "cli"},
}


def folder_of(module: str) -> str | None:
    """'' for the root's method modules, the first subpackage's name otherwise; None for the
    package's own __init__ and __main__ (the public names and ``python -m maskad_core``)."""
    parts = module.split(".")
    if module in METHOD:
        return ""
    if len(parts) == 1 or module == "maskad_core.__main__":
        return None
    return parts[1] if len(parts) > 2 or parts[1] in ALLOWED else None


def layer_violations(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """module -> the imported modules its folder may not import (by ALLOWED)."""
    found = {}
    for module, targets in graph.items():
        folder = folder_of(module)
        if folder is None:
            continue
        bad = sorted(t for t in targets if folder_of(t) is not None and folder_of(t) not in ALLOWED[folder])
        if bad:
            found[module] = bad
    return found


def test_every_module_sits_in_a_named_layer():
    unplaced = [m for m in modules() if folder_of(m) is None
                and m not in ("maskad_core", "maskad_core.__main__")]
    assert not unplaced, f"modules outside the method and the five folders: {unplaced}"


def test_the_folders_import_only_the_layers_below_them():
    violations = layer_violations(import_graph())
    assert not violations, f"imports across the layers: {violations}"


def test_the_layer_check_finds_an_import_against_the_layers():
    graph = {"maskad_core.training.train": {"maskad_core.evaluation.run_record", "maskad_core.model"},
             "maskad_core.model": {"maskad_core.data.mvtec"},
             "maskad_core.data.mvtec": {"maskad_core.model"},
             "maskad_core.evaluation.x": {"maskad_core.cli.main"}}
    assert layer_violations(graph) == {
        "maskad_core.training.train": ["maskad_core.evaluation.run_record"],
        "maskad_core.model": ["maskad_core.data.mvtec"],
        "maskad_core.evaluation.x": ["maskad_core.cli.main"]}


def test_the_root_holds_the_method_alone_in_about_1200_lines():
    root = [p for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert {module_name(p) for p in root} == METHOD
    assert sum(len(p.read_text().splitlines()) for p in root) <= 1300


def test_nothing_but_the_entry_points_imports_the_command_line():
    importers = {m for m, targets in import_graph().items()
                 if any(t.startswith("maskad_core.cli") for t in targets)
                 and not m.startswith("maskad_core.cli") and m != "maskad_core.__main__"}
    assert not importers, importers


def test_the_book_extension_imports_no_torch_heavy_module():
    """The light `make book` has no torch: the extension may import only the torch-free study
    modules it names (paper, edition, verdict) and the package's lazy __init__."""
    extension = Path(__file__).resolve().parents[1] / "book" / "_ext" / "maskad_book.py"
    names = {n for n in imported_names(extension, "") if n.startswith("maskad_core")}
    assert names <= {"maskad_core", "maskad_core.study", "maskad_core.study.paper",
                     "maskad_core.study.edition", "maskad_core.study.edition.fingerprint",
                     "maskad_core.study.verdict",
                     "maskad_core.study.edition.read_edition",
                     "maskad_core.study.edition.staleness_message"}, names
