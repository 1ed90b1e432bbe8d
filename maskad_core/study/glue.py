"""What the executed notebooks glue (myst-nb's ``glue``): read back without scrapbook, and each
figure stored once. Used by :mod:`maskad_core.study.runner` (which re-exports these names) and the tests."""

from __future__ import annotations

from pathlib import Path

GLUE_PREFIX = "application/papermill.record/"


def keep_one_copy_of_glued_figures(path: Path) -> int:
    """Store each figure once: where a cell both shows a figure (``plt.show()``) and glues the same
    image with ``display=False``, drop the shown copy and make the glue record the displayed output,
    as ``glue(name, fig, display=True)`` would have written it. Returns how many copies went."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    removed = 0
    for cell in notebook.cells:
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        for record in list(outputs):  # a copy: shown copies are removed on the way
            image = record.get("data", {}).get(GLUE_PREFIX + "image/png")
            meta = record.get("metadata", {}).get("scrapbook")
            shown = [o for o in outputs if o is not record and image is not None and
                     o.get("output_type") == "display_data" and o.get("data", {}).get("image/png") == image]
            if not meta or not shown:
                continue
            outputs.remove(shown[0])
            record["data"] = {mime.removeprefix(GLUE_PREFIX): data for mime, data in record["data"].items()}
            meta["mime_prefix"] = ""
            removed += 1
    if removed:
        nbformat.write(notebook, str(path))
    return removed


def read_glue(notebook: str | Path) -> dict[str, dict]:
    """Glued outputs of an executed notebook: name -> {mime type: data} (prefix removed).

    Reads myst-nb's glue outputs (display_data whose metadata names the key) without scrapbook.
    """
    import nbformat

    glued: dict[str, dict] = {}
    for cell in nbformat.read(str(notebook), as_version=4).cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if output.get("output_type") != "display_data" or not name:
                continue
            glued[name] = {mime.removeprefix(GLUE_PREFIX): data
                           for mime, data in output.get("data", {}).items()}
    return glued


def glued_value(notebook: str | Path, name: str):
    """A glued value's Python literal (numbers, booleans, strings, lists, dicts); KeyError if absent."""
    import ast

    glued = read_glue(notebook)
    if name not in glued:
        raise KeyError(f"{Path(notebook).name} glues no {name!r}; it glues: {', '.join(sorted(glued))}")
    text = glued[name].get("text/plain", "")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
