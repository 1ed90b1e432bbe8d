"""Text-to-code ratio of the study's notebook sources (``notebooks/0*.md``, jupytext's MyST format).

``python -m bench.records.prose_ratio`` prints, per notebook, the prose lines and the code lines a reader of
the rendered book sees, and their ratio (the project's target: at least 1); ``--check`` also exits 1
when a notebook is below it. ``prose_ratio(path)`` returns the counts as a dict. No torch.

What counts:

* prose: non-blank Markdown lines outside code cells, except the YAML front matter, MyST comments
  (``% ...``), targets (``(label)=``), HTML comments, jupytext's cell breaks (``+++``), the fence
  and option lines of directives (``` ```{figure} path ```, ``:width: 80%``) and plain fenced code
  blocks in the Markdown (``` ```bash ```: those are code, counted under ``fenced_code``);
  Markdown cells tagged as hidden (below) do not count either;
* code: non-blank lines of ``{code-cell}`` blocks that the book shows expanded: a cell tagged
  ``remove-input``, ``remove-cell``, ``hide-input``, ``hide-cell`` or ``parameters`` (collapsed by
  ``togglebutton_selector`` in ``_config.yml``) is not counted; its lines go to ``hidden_code``.
  Lines of plain fenced code blocks in the Markdown are shown as code too and are added.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = "notebooks/0*.md"
TARGET = 1.0  # prose lines per visible code line
# Tags whose cell the rendered book does not show expanded (removed, or collapsed behind a toggle).
HIDDEN_TAGS = frozenset({"remove-input", "remove-cell", "hide-input", "hide-cell", "parameters"})

CODE_DIRECTIVES = frozenset({"code-block", "code", "sourcecode", "literalinclude"})
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
_TARGET = re.compile(r"^\s*\([^()\s][^()]*\)=\s*$")
_OPTION = re.compile(r"^\s*:[\w-]+:(\s.*)?$")
_CELL_BREAK = re.compile(r"^\+\+\+(\s*\{.*\})?\s*$")


def _tags_from_options(lines: list[str]) -> tuple[list[str], int]:
    """The tags in a code cell's (or directive's) option block, and how many lines the block takes:
    ``:key: value`` lines, or a YAML block between ``---`` lines, right after the opening fence."""
    options: dict = {}
    used = 0
    if lines and lines[0].strip() == "---":
        for end in range(1, len(lines)):
            if lines[end].strip() == "---":
                options = yaml.safe_load("\n".join(lines[1:end])) or {}
                used = end + 1
                break
    else:
        while used < len(lines) and _OPTION.match(lines[used]):
            key, _, value = lines[used].strip()[1:].partition(":")
            options[key] = yaml.safe_load(value) if value.strip() else None
            used += 1
    tags = options.get("tags") if isinstance(options, dict) else None
    if isinstance(tags, str):
        tags = [tags]
    return [str(tag) for tag in tags or []], used


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return (bool(stripped) and set(stripped) == {fence[0]} and len(stripped) >= len(fence))


def _front_matter_end(lines: list[str]) -> int:
    if lines and lines[0].strip() == "---":
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                return index + 1
    return 0


def _cell_break_tags(line: str) -> list[str]:
    """Tags of the Markdown cell that a ``+++ {"tags": [...]}`` break opens."""
    _, _, metadata = line.partition("+++")
    if not metadata.strip():
        return []
    try:
        tags = (yaml.safe_load(metadata) or {}).get("tags")
    except yaml.YAMLError:
        return []
    return [str(tag) for tag in tags or []]


def _is_code_block(match: re.Match) -> bool:
    """A fence that opens literal code: ```` ```lang ```` or a ``{code-block}``-like directive."""
    info = match.group("info")
    if match.group("fence")[0] == ":":
        return False
    return not info.startswith("{") or info.split("}")[0][1:] in CODE_DIRECTIVES


def _block_end(lines: list[str], start: int, fence: str) -> int:
    """Index of the line that closes the block opened at ``start`` (len(lines) when unclosed)."""
    for index in range(start + 1, len(lines)):
        if _closes(lines[index], fence):
            return index
    return len(lines)


def count_lines(text: str) -> dict:
    """Counts of one notebook source: prose, code (visible), hidden_code, fenced_code, cells."""
    lines = text.splitlines()
    counts = {"prose": 0, "code": 0, "hidden_code": 0, "fenced_code": 0,
              "code_cells": 0, "hidden_cells": 0}
    markdown_hidden = False  # the current Markdown cell is tagged hidden
    in_html_comment = False
    directives: list[str] = []  # fences of the directives open around the current line
    index = _front_matter_end(lines)
    while index < len(lines):
        line = lines[index]
        if in_html_comment:
            in_html_comment = "-->" not in line
            index += 1
            continue
        match = _FENCE.match(line)
        if match and match.group("info").startswith("{code-cell}"):
            end = _block_end(lines, index, match.group("fence"))
            body = lines[index + 1:end]
            tags, used = _tags_from_options(body)
            code = sum(1 for body_line in body[used:] if body_line.strip())
            counts["code_cells"] += 1
            if HIDDEN_TAGS.intersection(tags):
                counts["hidden_cells"] += 1
                counts["hidden_code"] += code
            else:
                counts["code"] += code
            index = end + 1
            markdown_hidden = False  # the next Markdown cell starts untagged
            continue
        if directives and match and not match.group("info") and _closes(line, directives[-1]):
            directives.pop()  # a directive's closing fence: markup
            index += 1
            continue
        if match and _is_code_block(match):  # a code block in the Markdown, shown as code
            end = _block_end(lines, index, match.group("fence"))
            body = lines[index + 1:end]
            used = _tags_from_options(body)[1] if match.group("info").startswith("{") else 0
            if not markdown_hidden:
                counts["fenced_code"] += sum(1 for body_line in body[used:] if body_line.strip())
            index = end + 1
            continue
        if match:  # a directive's opening fence: markup, and so are its options; its body is prose
            directives.append(match.group("fence"))
            index += 1 + _tags_from_options(lines[index + 1:])[1]
            continue
        if _CELL_BREAK.match(line):
            markdown_hidden = bool(HIDDEN_TAGS.intersection(_cell_break_tags(line)))
        elif line.lstrip().startswith("<!--"):
            in_html_comment = "-->" not in line
        elif line.strip() and not (markdown_hidden or line.lstrip().startswith("%")
                                   or _TARGET.match(line)):
            counts["prose"] += 1
        index += 1
    counts["code"] += counts["fenced_code"]
    return counts


def prose_ratio(path: str | Path) -> dict:
    """{'path', 'prose', 'code', 'ratio', ...} of one notebook source; ratio is prose / code
    (infinite when no code is shown)."""
    counts = count_lines(Path(path).read_text(encoding="utf8"))
    ratio = counts["prose"] / counts["code"] if counts["code"] else math.inf
    return {"path": str(path), **counts, "ratio": ratio}


def notebook_sources(root: Path = REPO) -> list[Path]:
    return sorted(root.glob(NOTEBOOKS))


def format_table(rows: list[dict]) -> str:
    header = f"{'notebook':<32} {'prose':>6} {'code':>6} {'ratio':>6} {'hidden code':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{Path(row['path']).name:<32} {row['prose']:>6} {row['code']:>6} "
                     f"{row['ratio']:>6.2f} {row['hidden_code']:>12}")
    prose, code = sum(r["prose"] for r in rows), sum(r["code"] for r in rows)
    lines.append(f"{'all':<32} {prose:>6} {code:>6} {prose / code if code else math.inf:>6.2f} "
                 f"{sum(r['hidden_code'] for r in rows):>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.records.prose_ratio", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help=f"notebook sources (default: {NOTEBOOKS})")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when a ratio is below {TARGET}")
    args = parser.parse_args(argv)
    rows = [prose_ratio(path) for path in args.paths or notebook_sources()]
    print(format_table(rows))
    below = [Path(row["path"]).name for row in rows if row["ratio"] < TARGET]
    if below:
        print(f"below the target of {TARGET:g} prose line per code line: {', '.join(below)}")
    return 1 if args.check and below else 0


if __name__ == "__main__":
    sys.exit(main())
