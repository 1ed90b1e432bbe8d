"""Sphinx extension for the maskad book.

1. MyST substitutions computed at build time, so the prose never types a number by hand:
   * ``paper_*``: the paper's own numbers and the checks of its arithmetic, from
     ``maskad_core.study.paper`` (which reads ``maskad_core/study/paper_tables.yaml``, the one place they are typed);
   * ``default_*``: the choices this study makes where the paper is silent, read from the code
     (``TrainConfig`` defaults, ``MVTecAD`` augmentation strengths);
   * ``profile*``: the profiles of ``maskad_core/study/profiles.yaml`` as a table;
   * ``verdict_*``: comparison words for the reproduction report ("higher than", "the same cell as"),
     computed from the values the executed notebooks glued (the numbers are pasted with glue roles);
   * ``bench_results``: the benchmark's Markdown tables from ``bench/results/``.
   Every statement the prose makes about the paper's numbers (e.g. "the printed means round the row
   means", "the text's gain over MKD is the table's gain over DAGAN") is asserted here, so the build
   fails instead of the book stating something the data contradict.
2. The launch button (Binder) of an executed notebook opens its source, ``notebooks/NAME.md``
   (jupytext, installed from environment.yml, opens it as a notebook): the executed copies under
   ``book/executed*/`` (one folder per edition) are build products of the study.
3. Images pasted across notebooks (``{glue}`` with ``:doc:``) are written to ``_images`` (myst-nb only
   references them).

The build needs no torch (``make book`` installs only ``book/requirements.txt``): of ``maskad_core``
it imports the torch-free modules ``paper`` and ``edition`` and reads the rest from the sources
(TrainConfig's defaults, MVTecAD's augmentation strengths, ``profiles.yaml``); tests/test_packaging.py
checks that what it reads equals what the imported modules say, and that it runs with torch absent.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ConfigError
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Every edition's folder: book/executed/ (cpu), book/executed-real/ (real), ... (profiles.executed_dir)
EXECUTED_FOLDER = re.compile(r"book/executed(-[A-Za-z0-9_]+)?/")
SOURCE_PREFIX = "notebooks/"
SOURCE_SUFFIX = ".md"  # the notebooks' sources are MyST Markdown (maskad_core.study.runner.NOTEBOOK_SUFFIX)


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _check(condition: bool, statement: str) -> None:
    if not condition:
        raise ConfigError(f"maskad_book: the book states that {statement}, but the data say otherwise")


def paper_substitutions() -> dict[str, str]:
    """Table 1 and 2 as Markdown, and the arithmetic checks of the paper's own numbers."""
    from maskad_core.study import paper

    table1 = paper.table1()
    printed = paper.table1_printed_mean()
    claims = paper.claims()
    setting = paper.setting()
    table2 = paper.table2()
    methods = list(table1.columns)
    ours = "paper"
    baselines = [m for m in methods if m != ours]
    subs: dict[str, str] = {}

    # Table 1 with the best value per category in bold, the printed mean and the recomputed mean.
    rows = []
    for category, values in table1.iterrows():
        best = values.max()
        cells = [f"**{_fmt(v)}**" if v == best else _fmt(v) for v in values]
        rows.append([category.replace("_", " ")] + cells)
    recomputed = table1.mean()
    rows.append(["*mean, printed*"] + [_fmt(printed[m]) for m in methods])
    rows.append(["*mean, recomputed*"] + [_fmt(recomputed[m], 4) for m in methods])
    subs["paper_table1"] = _markdown_table(["category"] + methods, rows)

    # The printed means are the row means rounded to three decimals.
    deviation = (recomputed - printed).abs()
    _check(bool((deviation <= 0.0005 + 1e-12).all()), "every printed mean rounds the recomputed mean")
    subs["paper_mean_max_deviation"] = _fmt(float(deviation.max()), 4)
    for method in methods:
        subs[f"paper_mean_printed_{method.replace('-', '')}"] = _fmt(printed[method])
        subs[f"paper_mean_recomputed_{method.replace('-', '')}"] = _fmt(recomputed[method], 4)
    subs["paper_num_categories"] = str(len(table1))

    # Relative gains claimed in the abstract: printed paper mean over each printed baseline mean.
    for method in baselines:
        gain = (printed[ours] / printed[method] - 1.0) * 100.0
        claimed = claims["abstract_relative_gain_percent"][method]
        _check(abs(gain - claimed) < 0.005 + 1e-9, f"the abstract's {claimed}% over {method} recomputes")
        key = method.replace("-", "")
        subs[f"paper_rel_gain_{key}"] = f"{gain:.2f}"
        subs[f"paper_claim_rel_gain_{key}"] = f"{claimed:.2f}"

    # The text's absolute gain "over MKD" against the table; it equals the gain over DAGAN.
    gain_mkd = printed[ours] - printed["MKD"]
    gain_dagan = printed[ours] - printed["DAGAN"]
    claim_mkd = claims["text_gain_over_mkd"]
    _check(abs(gain_mkd - claim_mkd) > 0.0005, "the text's gain over MKD does not match the table")
    _check(abs(gain_dagan - claim_mkd) < 1e-9, "the text's gain over MKD equals the table's gain over DAGAN")
    subs["paper_gain_mkd_table"] = _fmt(gain_mkd)
    subs["paper_gain_dagan_table"] = _fmt(gain_dagan)
    subs["paper_claim_gain_mkd"] = _fmt(claim_mkd)

    # Categories where the paper's model is strictly best of the four columns.
    best = [c for c, v in table1.iterrows() if v[ours] > v[baselines].max()]
    _check(len(best) == claims["categories_best"], "the paper is best in as many categories as it says")
    _check(bool((table1[ours] > 0.5).all()), "the paper's model is above chance in every category")
    subs["paper_best_count"] = str(len(best))
    subs["paper_claim_best_count"] = str(claims["categories_best"])
    subs["paper_best_list"] = ", ".join(c.replace("_", " ") for c in best)
    worst_gap = table1[baselines].max(axis=1) - table1[ours]
    subs["paper_largest_deficit_category"] = str(worst_gap.idxmax()).replace("_", " ")
    subs["paper_largest_deficit"] = _fmt(float(worst_gap.max()))

    # Table 2 (rows sorted by mask ratio) with its best cell in bold and the view count n = 1/(1-r).
    best_value = table2.to_numpy().max()
    rows = []
    for ratio, values in table2.iterrows():
        views = 1.0 / (1.0 - ratio)
        cells = [f"**{_fmt(v)}**" if v == best_value else _fmt(v) for v in values]
        rows.append([f"{ratio:.2f}", f"{views:g}"] + cells)
    subs["paper_table2"] = _markdown_table(["mask ratio *r*", "views *n*"] + list(table2.columns), rows)
    best_ratio, best_depth = table2.stack().idxmax()
    subs["paper_t2_best_value"] = _fmt(best_value)
    subs["paper_t2_best_depth"] = str(best_depth)
    subs["paper_t2_best_ratio"] = f"{best_ratio:.2f}"
    _check(abs(best_value - printed[ours]) < 1e-9, "Table 2's best cell is Table 1's mean")
    # Views per ratio and whether they tile the paper's 14 x 14 = 196 patches evenly.
    patches = (setting["image_size"] // setting["patch_size"]) ** 2
    subs["paper_num_patches"] = str(patches)
    uneven = []
    for ratio in table2.index:
        views = round(1.0 / (1.0 - ratio))
        subs[f"paper_views_r{int(round(ratio * 100))}"] = str(views)
        if patches % views:
            uneven.append(f"*n* = {views} ({patches} / {views} = {patches / views:.1f})")
    subs["paper_uneven_views"] = " and ".join(uneven)
    subs["paper_t2_ratios"] = ", ".join(f"{r:g}" for r in table2.index)
    subs["paper_t2_views"] = ", ".join(str(round(1.0 / (1.0 - r))) for r in table2.index)
    views = round(1.0 / (1.0 - setting["mask_ratio"]))
    subs["paper_views"] = str(views)
    subs["paper_visible_per_view"] = f"{patches / views:g}"
    subs["paper_combine_coefficient"] = f"1/{views - 1}"

    # The training setting as printed.
    for key, value in setting.items():
        subs[f"paper_setting_{key}"] = f"{value:g}" if isinstance(value, float) else str(value)
    subs["paper_best_mean"] = _fmt(printed[ours])
    # "1000 iterations" read literally as optimiser steps of one batch each.
    steps = setting["epochs"] * setting["batch_size"]
    subs["paper_iterations_images"] = f"{steps:,}"
    subs["paper_iterations_as_epochs"] = f"{steps / setting['train_images']:.1f}"
    _check(steps / setting["train_images"] < setting["warmup_epochs"],
           "read as steps, the paper's iterations would end before its warmup does")
    return subs


# ----------------------------------------------------------------- maskad_core read without torch
# maskad_core.training.config, .data and .profiles import torch (config imports the model, losses, data);
# the book's light environment has none, so what the book states of them is read from the sources.


def _package_dir() -> Path:
    import maskad_core

    return Path(maskad_core.__file__).resolve().parent


def _module_tree(module: str):
    import ast

    return ast.parse((_package_dir() / f"{module.replace('.', '/')}.py").read_text(encoding="utf8"))


def _unreadable(module: str, node) -> ConfigError:
    import ast

    return ConfigError(
        f"maskad_book: cannot read `{ast.unparse(node)}` in maskad_core/{module.replace('.', '/')}.py without "
        "importing it (the book is built without torch): write the value as a literal or a module "
        "constant, or teach book/_ext/maskad_book.py's _evaluate to read it")


def _module_constant(module: str, name: str):
    """A module-level ``NAME = <expression>`` of maskad_core/<module>.py, followed through
    ``from maskad_core.<other> import NAME``; the last binding wins, as when the module runs."""
    import ast

    found = None
    for node in _module_tree(module).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = ("value", node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            found = ("value", node.value)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("maskad_core."):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    found = ("import", (node.module.split(".", 1)[1], alias.name))
    if found is None:
        raise ConfigError(f"maskad_book: maskad_core/{module.replace('.', '/')}.py defines no {name}")
    kind, what = found
    return _evaluate(what, module) if kind == "value" else _module_constant(*what)


def _evaluate(node, module: str):
    """The value of a default's expression: literals, module constants, ``list(...)``/``tuple(...)``
    of them and ``field(default=...)`` or ``field(default_factory=lambda: ...)``."""
    import ast

    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.Name):
        return _module_constant(module, node.id)
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_evaluate(item, module) for item in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "text " + OTHER_RULE
        return _evaluate(node.left, module) + _evaluate(node.right, module)
    if isinstance(node, ast.Lambda) and not node.args.args:
        return _evaluate(node.body, module)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in ("list", "tuple") and len(node.args) == 1 and not node.keywords:
            return {"list": list, "tuple": tuple}[node.func.id](_evaluate(node.args[0], module))
        if node.func.id == "field" and not node.args:
            keywords = {k.arg: k.value for k in node.keywords}
            for key in ("default", "default_factory"):
                if key in keywords:
                    return _evaluate(keywords[key], module)
    raise _unreadable(module, node)


def _as_annotated(value, annotation: str):
    """A default as TrainConfig.__post_init__ types it: an int of a float field is a float, a list
    field's items are text."""
    base = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    kind = base[0] if len(base) == 1 else annotation
    if value is None:
        return None
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind.startswith("list"):
        return [str(item) for item in value]
    return value


def train_config_defaults() -> dict[str, Any]:
    """``TrainConfig().to_dict()``, read from maskad_core/training/config.py (which imports torch)."""
    import ast

    tree = _module_tree("training.config")
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig").body
    defaults = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.value is None:
                raise ConfigError(f"maskad_book: TrainConfig.{node.target.id} has no default")
            defaults[node.target.id] = _as_annotated(_evaluate(node.value, "training.config"),
                                                     ast.unparse(node.annotation))
    return defaults


def function_defaults(module: str, cls: str, function: str,
                      names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The defaults of ``cls.function``'s parameters (those in ``names``, or all), read from
    maskad_core/<module>.py."""
    import ast

    tree = _module_tree(module)
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    func = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == function)
    args = func.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
    return {arg.arg: _evaluate(default, module) for arg, default in pairs
            if names is None or arg.arg in names}


def _profiles_yaml() -> dict:
    import yaml

    return yaml.safe_load((_package_dir() / "study" / "profiles.yaml").read_text(encoding="utf8"))


def profile_names() -> list[str]:
    """``maskad_core.study.profiles.profile_names()``."""
    return [name for name in _profiles_yaml() if not name.startswith("_")]


def load_profile(name: str) -> dict[str, Any]:
    """``maskad_core.study.profiles.load_profile(name)`` (no overrides); ValueError for an unknown profile."""
    raw = _profiles_yaml()
    if name not in raw or name.startswith("_"):
        raise ValueError(f"unknown profile {name!r}")
    return {**raw[name]["parameters"], "profile": name}


def profile_description(name: str) -> str:
    """``maskad_core.study.profiles.profile_description(name)``."""
    return str(_profiles_yaml()[name].get("description", "")).strip()


def stale_parts(executed_dir: Path, notebooks_dir: Path) -> list[str] | None:
    """``maskad_core.study.edition.stale_parts``, with the profile read by :func:`load_profile`."""
    from maskad_core.study.edition import fingerprint, read_edition

    record = read_edition(executed_dir)
    if record is None:
        return None
    try:
        params = load_profile(record["profile"])
    except ValueError:  # the profile no longer exists
        params = {}
    now = fingerprint(params, notebooks_dir)
    return [part for part in ("code", "notebooks", "parameters")
            if record["fingerprint"].get(part) != now[part]]


def default_substitutions() -> dict[str, str]:
    """The choices this study makes where the paper is silent, as the code defines them."""
    subs = {f"default_{name}": _plain(value) for name, value in train_config_defaults().items()}
    # The strength of the augmentations, as the data layer defines them.
    strengths = ("crop_scale", "rotate_degrees", "flip_probability")
    for name, value in function_defaults("data.mvtec", "MVTecAD", "__init__", strengths).items():
        subs[f"default_{name}"] = (
            " to ".join(f"{v:g}" for v in value) if isinstance(value, tuple) else f"{value:g}"
        )
    return subs


def profile_substitutions() -> dict[str, str]:
    """The study's profiles (maskad_core/study/profiles.yaml) as a Markdown table and a definition list."""
    raw = _profiles_yaml()
    rows, descriptions = [], []
    subs: dict[str, str] = {}
    for name in profile_names():
        p = load_profile(name)
        # a real profile's folder is the building machine's: the reader gives their own
        data = "synthetic (embedded)" if p["data_root"] in (None, "") else "real images, `-p data_root=PATH`"
        if "data_root" in raw[name].get("requires", []) and p["data_root"] in (None, ""):
            data = "MVTec AD, `-p data_root=PATH`"
        data += (", every category found" if p["categories"] is None
                 else f", {len(p['categories'])} categories")
        cap = "all" if p["max_train_images_per_category"] is None else str(p["max_train_images_per_category"])
        model = f"E{p['depth']}D{p['decoder_depth']}, {p['embed_dim']}/{p['decoder_embed_dim']}"
        grid = f"{len(p['ablation_depths'])} × {len(p['ablation_ratios'])}, {p['ablation_epochs']}"
        rows.append([f"`{name}`", data, f"{p['image_size']} px / {p['patch_size']} px",
                     model, str(p["epochs"]), cap, grid])
        descriptions.append(f"`{name}`\n: {profile_description(name)}")
        subs[f"profile_{name}_epochs"] = str(p["epochs"])
        subs[f"profile_{name}_ablation_epochs"] = str(p["ablation_epochs"])
        subs[f"profile_{name}_grid_runs"] = str(len(p["ablation_depths"]) * len(p["ablation_ratios"]))
    subs["profiles_table"] = _markdown_table(
        ["profile", "data", "image / patch", "model, widths", "epochs", "train images per category",
         "Table 2 grid, epochs per cell"], rows)
    subs["profiles_descriptions"] = "\n\n".join(descriptions)
    subs["profile_names"] = ", ".join(f"`{n}`" for n in profile_names())
    return subs


EXECUTED_DIR = ("book", "executed-real")  # the edition the reproduction report is built on


def read_glue(notebook) -> dict[str, Any]:
    """The values glued (myst_nb.glue) in an executed notebook: key -> Python value of its text/plain."""
    import ast
    import json

    values: dict[str, Any] = {}
    cells = json.loads(notebook.read_text(encoding="utf8")).get("cells", [])
    for cell in cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            text = output.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain")
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[meta["name"]] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[meta["name"]] = text
    return values


def study_substitutions(srcdir: str) -> tuple[dict[str, str], list[str]]:
    """Comparison words for the reproduction report, computed from the executed notebooks' glue.

    The numbers themselves are pasted with ``{glue:text}``; these substitutions only say how they
    compare (e.g. "higher than"), so that the prose stays true whatever profile produced them.
    """
    folder = Path(srcdir).joinpath(*EXECUTED_DIR)
    glue: dict[str, dict[str, Any]] = {}
    problems = []
    for name in ("01_mae_baseline_failure", "02_complementary_masking", "03_training", "04_table1",
                 "05_table2_ablation", "06_figure3_histograms"):
        path = folder / f"{name}.ipynb"
        if not path.is_file():
            problems.append(f"{path} is missing: run `maskad study --profile cpu` (or smoke) first")
            continue
        glue[name] = read_glue(path)
    subs: dict[str, str] = {}
    try:
        t1, t2 = glue["04_table1"], glue["05_table2_ablation"]
        t1b, t2b = glue["01_mae_baseline_failure"], glue["02_complementary_masking"]
        # The comparison words of Table 1 are glued by the notebook itself (maskad_core.study.headline);
        # here only the rule for one seed, and the Table 2 cell, which has one seed per cell.
        subs["rule_one_seed"] = _module_constant("study.headline", "INTERVAL_RULE")
        subs["rule_seeds"] = _module_constant("study.comparison", "SEEDS_RULE")
        subs["rule_pixel"] = _module_constant("study.headline", "PIXEL_RULE")
        subs["verdict_table2_same_best"] = (
            "the same cell as the paper's" if t2["table2_best_cell"] == t2["paper_table2_best_cell"]
            else "not the paper's cell; with one seed per cell the grid does not resolve a ranking")
        subs["verdict_lpips"] = (
            "with" if glue["03_training"].get("lpips_active") is True else "without")
        subs["verdict_closed_form"] = "agree" if t1b["closed_form_agrees"] is True else "disagree"
        subs["verdict_identities"] = "hold" if t2b["all_identities_hold"] is True else "do not all hold"
        visible_error = float(t1b["random_error_visible_defect"])
        subs["verdict_copy"] = (
            "not measured here (no defect masks in the data)" if math.isnan(visible_error)
            else "zero by construction: this study composes a random-mask model's reconstruction "
                 "from its output on masked patches and the input on visible ones (the study's "
                 "choice for the baseline, not the paper's eq. 3, which composes complementary "
                 "views), so it checks the code; the copy-through argument predicts no error there"
            if visible_error == 0.0
            else "not zero, which the copy-through argument does not predict")
        # The seed is part of the provenance line that every notebook prints and glues.
        seed = re.search(r"\bseed (\d+)", str(t1.get("nb04_provenance", "")))
        subs["study_seed"] = seed.group(1) if seed else "not stated (see the provenance line below)"
        t6 = glue["06_figure3_histograms"]
        count, total = int(t6["top_bin_mostly_anomalous_count"]), int(t6["histogram_categories"])
        subs["verdict_top_bin"] = ("all" if count == total else "none" if count == 0
                                   else "most" if 2 * count > total else "only some")
    except KeyError as error:
        problems.append(f"the executed notebooks lack the glue key {error} that the reproduction "
                        "report needs (see notebooks/README.md)")
    return subs, problems


def verdict_substitutions(srcdir: str) -> dict[str, str]:
    """The verdict box (``maskad_core.study.verdict``) from the records in bench/results and, for the
    budget, Table 2 and Figure 3, the real edition's glue; the rule behind it; the control's residue."""
    import maskad_core
    from maskad_core.study import verdict

    folder = next((d for d in (Path(srcdir) / "bench" / "results",
                               Path(maskad_core.__file__).resolve().parents[1] / "bench" / "results")
                   if (d / "quality.json").is_file()), None)
    records = verdict.load_records(folder) if folder else {"section": None, "paired": None, "residue": None}
    executed = Path(srcdir).joinpath(*EXECUTED_DIR)

    def glued(name):
        path = executed / f"{name}.ipynb"
        return read_glue(path) if path.is_file() else {}

    training, table2, figure3 = glued("03_training"), glued("05_table2_ablation"), glued("06_figure3_histograms")
    section = records["section"]
    inputs: dict[str, Any] = {"paired": records["paired"], "residue": records["residue"]}
    if section is not None and "train_images_seen" in training:
        inputs["train_images"] = int(training["train_images_seen"]) // int(section["config"]["epochs"])
    if "lpips_active" in training:
        inputs["lpips"] = training["lpips_active"] is True
    if {"table2_best_cell", "table2_cells_run_count"} <= set(table2):
        inputs["table2"] = {"best_cell": table2["table2_best_cell"],
                            "paper_best_cell": table2["paper_table2_best_cell"],
                            "cells_run": table2["table2_cells_run_count"],
                            "cells_total": table2["table2_cells_total"]}
    if {"top_bin_mostly_anomalous_count", "top_bin_claim_met_by_chance_count"} <= set(figure3):
        inputs["figure3"] = {"count": figure3["top_bin_mostly_anomalous_count"],
                             "total": figure3["histogram_categories"],
                             "by_chance": figure3["top_bin_claim_met_by_chance_count"]}
    return {"verdict_box": verdict.verdict_box(section, **inputs), "verdict_rule": verdict.VERDICT_RULE,
            "verdict_residue": (verdict.residue_sentence(section, records["residue"]) + "."
                                if section is not None and records["residue"] else
                                "(The control's residue is not recorded: `python -m bench.records.control_residue`.)"),
            "verdict_beyond": (verdict.beyond_findings(section, records["residue"])
                               if section is not None else "(the evidence record is missing)"),
            "verdict_finding": (verdict.finding(section, records["residue"], records["paired"])
                                if section is not None else "(the evidence record is missing)"),
            "verdict_budget": (verdict.budget_words(section, inputs.get("train_images"), inputs.get("lpips"))
                               if section is not None else "(the evidence record is missing)")}


SUMMARISED_BENCH_TAGS = {
    "lab": "the `lab` profile timed from an empty run cache; summarised in {doc}`teaching`.",
    "quality": "the evidence record of the real profile (three seeds per arm, the control, the "
               "training-free detectors and the 2 × 2 of training and test masking), shown in the "
               "chapter on making the model detect and in the {doc}`reproduction_report`.",
    "quality-real-epochs20": "the same record at 20 epochs, set beside it in the "
                             "{doc}`reproduction_report`.",
    "training": "the real profile's training, the code before the speed work against the code now, "
                "interleaved in one run, and the cost as the work grows (categories, image size, scoring "
                "batch, memory, the paper's schedule projected on this CPU).",
    "threads": "one image and a batch scored with one against two torch threads (the cpu and real "
               "profiles, interleaved): the measurement behind the library's thread choice.",
    "control_residue": "what the control leaves of the screw confound, measured with no model; shown in "
                       "{doc}`beyond` and in the {doc}`reproduction_report`.",
    "curve-real-complementary-seed0": "the long run of the real profile's model with complementary masks, "
                                      "every kept snapshot scored; shown in the chapter on making the model detect.",
    "curve-real-random-seed0": "the same long run with random masks; shown beside it."}
SKIPPED_BENCH_TAGS = {"quick"}  # `python -m bench --quick`: a smoke check, not a measurement
# records the re-run chapter shows in their own section ({{ budget_results }}), not among the costs
BUDGET_TAGS = {"budget": "python -m bench.records.budget", "study_budget": "python -m bench.records.study_budget"}


def bench_substitutions(srcdir: str) -> tuple[dict[str, str], list[str]]:
    """The benchmark's Markdown results (bench/results/<tag>.md, written by ``python -m bench``).

    ``cpu.md`` first (required), then any other device's results (e.g. ``cuda.md``). Looked up beside
    the book's sources, then in the repository that holds ``maskad_core`` (a staged copy of the book
    may lack bench/). Returns the substitutions and the problems to warn about.
    """

    import maskad_core

    candidates = [Path(srcdir) / "bench" / "results",
                  Path(maskad_core.__file__).resolve().parents[1] / "bench" / "results"]
    folder = next((d for d in candidates if (d / "cpu.md").is_file()), None)
    if folder is None:
        problem = ("bench/results/cpu.md is missing: run `python -m bench` (or `maskad bench`) and "
                   "commit its results; the how-to-re-run chapter includes them")
        return {"bench_results": "*(No benchmark results were found when this book was built.)*"}, [problem]
    tags = ["cpu"] + sorted(p.stem for p in folder.glob("*.md")
                            if p.stem != "cpu" and p.stem not in SKIPPED_BENCH_TAGS | set(BUDGET_TAGS))
    # records summarised elsewhere in the book are named, not pasted (their commands, run ids and
    # code states are for the repository's reader, not the book's)
    sections = [f"**`bench/results/{tag}.md`**: {SUMMARISED_BENCH_TAGS[tag]}" if tag in SUMMARISED_BENCH_TAGS
                else f"**`bench/results/{tag}.md`**\n\n{_without_folders(_demoted((folder / f'{tag}.md').read_text().strip()))}"
                for tag in tags]
    # a budget record not yet measured (a study timed from a copy of the sources runs before its
    # own record exists) is said so on the page, not hidden
    budget = [f"**`bench/results/{tag}.md`**\n\n{_without_folders(_demoted((folder / f'{tag}.md').read_text().strip()))}"
              if (folder / f"{tag}.md").is_file() else
              f"**`bench/results/{tag}.md`**: not measured when this book was built (`{command}` writes it)."
              for tag, command in BUDGET_TAGS.items()]
    subs = {"bench_results": "\n\n".join(sections), "budget_results": "\n\n".join(budget)}
    subs.update(budget_curve_substitutions(folder / "budget.json"))
    subs["epochs_comparison_table"] = epochs_comparison_table(folder)
    subs["lab_summary"] = lab_summary(folder / "lab.json")
    return subs, []


def lab_summary(path: Path) -> str:
    """The lab profile's timing record (bench.records.lab) in two sentences: the page says what was
    measured and names the record; the record itself (commands, run ids, build log) stays in the
    repository."""
    if not path.is_file():
        return "The `lab` profile's timing is not measured yet (`python -m bench.records.lab` writes it)."
    record = json.loads(path.read_text())
    minutes, machine = record["minutes"], record["machine"]
    return (f"Measured on {record['date'][:10]}: the whole `lab` study, training included, took "
            f"{minutes['whole_study']:.1f} minutes from an empty run cache against a limit of "
            f"{minutes['limit']:g}, on {machine['cores']} cores of an {machine['cpu']} that other "
            f"programs used {machine['other_processes_cpu_share']:.0%} of meanwhile; training took "
            f"{minutes['training_main']:.1f} minutes for the main model and {minutes['training_random']:.1f} "
            "for the random-mask baseline. The full record, with its settings, is "
            "`bench/results/lab.md` in the repository.")


def _real_section(path: Path) -> dict | None:
    try:
        profiles = json.loads(path.read_text())["profiles"]
    except (OSError, ValueError, KeyError):
        return None
    return next((p for p in profiles if p.get("profile") == "real" and "arms" in p), None)


def epochs_comparison_table(folder: Path) -> str:
    """The real profile's evidence record (quality.json) beside its records at other numbers of
    epochs (quality-real-*.json, written with ``bench.records.quality --set epochs=...``): per category and
    arm, the default score's mean ± seed std [95% interval] at each budget."""
    sections = [s for s in [_real_section(folder / "quality.json"),
                            *(_real_section(p) for p in sorted(folder.glob("quality-real-*.json")))] if s]
    if len(sections) < 2:
        return "*(Only one budget of the real profile is recorded: no comparison.)*"
    sections.sort(key=lambda s: s["config"]["epochs"])
    arms = (("complementary|none", "complementary"), ("random|none", "random masking"),
            ("complementary|per_image", "complementary, under the control"))
    header = ["category", "arm", *(f"{s['config']['epochs']} epochs" for s in sections)]
    rows = []
    for category in sections[0]["arms"]["complementary|none"]["per_category"]:
        for key, label in arms:
            cells = []
            for section in sections:
                entry = section["arms"].get(key, {}).get("per_category", {}).get(category, {}).get("auroc")
                cells.append("—" if entry is None else
                             f"{_fmt(entry['mean'])} ± {_fmt(entry['std'])} [{_fmt(entry['ci'][0])}, {_fmt(entry['ci'][1])}]")
            rows.append([category, label, *cells])
    rows.append(["longest training", "minutes", *(f"{max(max(a['train_minutes']) for a in s['arms'].values()):.1f}"
                                                  for s in sections)])
    return _markdown_table(header, rows)


MACHINE_FOLDER = re.compile(r"(?:/work|/tmp|/root|/home)/[^\s;,()`]*|\.\./shared/[^\s;,()`]*")


RUN_ID = re.compile(r"(?<![0-9a-f])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{12}(?![0-9a-f])")


def _without_folders(markdown: str) -> str:
    """A record as the book shows it: the folders of the machine that measured it (its data and
    caches) become "(a local folder)"; the record in the repository keeps them."""
    markdown = MACHINE_FOLDER.sub("(a local folder)", markdown)
    return RUN_ID.sub("·", markdown)  # a run's id names a cache folder of that machine


def _demoted(markdown: str, levels: int = 2) -> str:
    """A results file's headings two levels down: its "# Title" sits under the chapter's section
    (a level-2 heading), not beside the chapter's own title."""
    return re.sub(r"^(#{1,6}) ", lambda m: "#" * min(6, len(m.group(1)) + levels) + " ", markdown,
                  flags=re.MULTILINE)


def budget_curve_substitutions(path: Path) -> dict[str, str]:
    """The epochs curve on held-out images (bench.records.budget) as numbers for the prose: the chosen
    epochs and their AUROC, the longest candidate and its AUROC, the lowest and highest point."""
    if not path.is_file():
        return {key: "(not measured)" for key in ("budget_chosen_epochs", "budget_chosen_auroc",
                                                  "budget_longest_epochs", "budget_longest_auroc",
                                                  "budget_lowest_auroc", "budget_highest_auroc")}
    record = json.loads(path.read_text())
    by_epochs = {point["epochs"]: point["mean_image_auroc"] for point in record["curve"]}
    longest = max(by_epochs)
    return {"budget_chosen_epochs": str(record["chosen_epochs"]),
            "budget_chosen_auroc": _fmt(by_epochs[record["chosen_epochs"]]),
            "budget_longest_epochs": str(longest), "budget_longest_auroc": _fmt(by_epochs[longest]),
            "budget_lowest_auroc": _fmt(min(by_epochs.values())),
            "budget_highest_auroc": _fmt(max(by_epochs.values()))}


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _import_package(srcdir: str) -> None:
    """maskad_core must be importable: installed (pip install -e .) or beside the book's sources."""
    import importlib
    import sys

    try:
        importlib.import_module("maskad_core")
    except ImportError:
        sys.path.insert(0, str(srcdir))
        try:
            importlib.import_module("maskad_core")
        except ImportError as error:
            raise ConfigError(
                f"maskad_book: cannot import maskad_core ({error}); install the package with "
                "`pip install -e .` or build the book from the repository root") from None


def add_substitutions(app: Sphinx, config) -> None:
    _import_package(app.srcdir)
    subs = dict(config.myst_substitutions or {})
    subs.update(paper_substitutions())
    subs.update(default_substitutions())
    subs.update(profile_substitutions())
    bench, problems = bench_substitutions(app.srcdir)
    subs.update(bench)
    verdicts, study_problems = study_substitutions(app.srcdir)
    subs.update(verdicts)
    problems += study_problems
    subs.update(verdict_substitutions(app.srcdir))
    for problem in problems:
        logger.warning(f"maskad_book: {problem}")
    subs["edition_status"] = edition_status(app, config)
    config.myst_substitutions = subs


def edition_status(app: Sphinx, config) -> str:
    """Whether each edition under book/ (book/executed, book/executed-real) was produced by the
    code, notebooks and profile in the repository now: said in the build log and, when one is
    stale or missing, in a banner on every page (an info, not a warning: a stale edition is a fact to
    show, and the build still renders it)."""
    from maskad_core.study.edition import read_edition, staleness_message

    messages, stale = [], False
    # the real edition leads the book, the generated-set lab (book/executed) comes last
    editions = sorted((Path(app.srcdir) / "book").glob("executed*"), key=lambda p: (p.name == "executed", p.name))
    for executed in editions:
        parts = stale_parts(executed, Path(app.srcdir) / "notebooks")
        messages.append(staleness_message(parts, read_edition(executed)))
        stale = stale or parts is None or bool(parts)
    message = " ".join(messages) or staleness_message(None, None)
    logger.info(f"maskad_book: editions: {message}")
    if stale or not messages:
        options = dict(config.html_theme_options or {})
        options["announcement"] = message
        config.html_theme_options = options
    return message


def _redirect_launch_urls(buttons: list[dict[str, Any]]) -> None:
    for button in buttons:
        if isinstance(button.get("buttons"), list):
            _redirect_launch_urls(button["buttons"])
        url = button.get("url")
        # Only the launch links (absolute URLs); the download link points into the build itself.
        if isinstance(url, str) and url.startswith("https://") and EXECUTED_FOLDER.search(url):
            button["url"] = EXECUTED_FOLDER.sub(SOURCE_PREFIX, url).replace(".ipynb", SOURCE_SUFFIX)


def redirect_launch_buttons(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if EXECUTED_FOLDER.match(pagename) and isinstance(context.get("header_buttons"), list):
        _redirect_launch_urls(context["header_buttons"])


def write_cross_glued_images(app: Sphinx, exception) -> None:
    """Make images pasted from another notebook (``{glue}`` with ``:doc:``) exist in the build.

    myst-nb points such a paste at ``_images/<sha256>.<ext>`` but only writes that file when the
    source notebook also displays the very same image; a figure glued with ``display=False`` and
    never shown would be a broken image. Write every glued image under that name when it is missing.
    """
    import hashlib
    import json
    from binascii import a2b_base64
    from mimetypes import guess_extension

    config = getattr(app.env, "mystnb_config", None)
    if exception is not None or app.builder.format != "html" or config is None:
        return
    images = Path(app.outdir) / app.builder.imagedir
    for glue_file in Path(config.output_folder).rglob("*.glue.json"):
        for output in json.loads(glue_file.read_text(encoding="utf8")).values():
            for mime, payload in output.get("data", {}).items():
                if mime not in ("image/png", "image/jpeg", "image/gif"):
                    continue
                raw = a2b_base64(payload)
                extension = guess_extension(mime) or "." + mime.rsplit("/")[-1]
                extension = ".jpeg" if extension == ".jpe" else extension  # as myst-nb names it
                target = images / f"{hashlib.sha256(raw).hexdigest()}{extension}"
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(raw)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", add_substitutions)
    # sphinx-book-theme adds its launch buttons at priority 501.
    app.connect("html-page-context", redirect_launch_buttons, priority=900)
    app.connect("build-finished", write_cross_glued_images)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
