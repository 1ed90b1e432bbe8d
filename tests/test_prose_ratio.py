"""The text-to-code ratio of the notebook sources (bench/records/prose_ratio.py): the counter on small
notebooks written here, and the project's target (at least one prose line per visible code line)
on every notebooks/0*.md."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.records import prose_ratio as pr

REPO = Path(__file__).resolve().parents[1]

FRONT = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  name: python3
---
"""


def write(tmp_path: Path, body: str, front: bool = True) -> Path:
    path = tmp_path / "nb.md"
    path.write_text((FRONT if front else "") + body, encoding="utf8")
    return path


def counts(tmp_path, body, front=True) -> dict:
    return pr.prose_ratio(write(tmp_path, body, front))


def test_prose_and_code_are_counted(tmp_path):
    result = counts(tmp_path, """
# Title

One line of prose.
Another line.

```{code-cell} ipython3
x = 1

y = 2
z = 3
```

Closing words.
""")
    assert (result["prose"], result["code"]) == (4, 3)  # the title counts; blank lines do not
    assert result["ratio"] == pytest.approx(4 / 3)
    assert result["code_cells"] == 1 and result["hidden_cells"] == 0


def test_front_matter_is_not_prose(tmp_path):
    with_front = counts(tmp_path, "# Title\n\nText.\n")
    assert with_front["prose"] == 2
    without = counts(tmp_path, "# Title\n\nText.\n", front=False)
    assert without["prose"] == 2
    # a rule (---) further down is prose markup, not a second front matter
    assert counts(tmp_path, "Text.\n\n---\n\nMore.\n")["prose"] == 3


@pytest.mark.parametrize("tag", sorted(pr.HIDDEN_TAGS))
def test_a_cell_tagged_hidden_is_not_counted(tmp_path, tag):
    result = counts(tmp_path, f"""
Text.

```{{code-cell}} ipython3
:tags: [{tag}]

a = 1
b = 2
```

```{{code-cell}} ipython3
c = 3
```
""")
    assert result["code"] == 1, tag
    assert result["hidden_code"] == 2 and result["hidden_cells"] == 1
    assert result["prose"] == 1  # the option line is neither prose nor code


def test_tags_in_a_yaml_block_and_other_tags(tmp_path):
    result = counts(tmp_path, """
```{code-cell} ipython3
---
editable: true
tags: [remove-output, hide-input]
---
a = 1
```

```{code-cell} ipython3
---
tags:
  - remove-output
---
b = 2
c = 3
```

```{code-cell} ipython3
:tags: [remove-output]
:mystnb:
d = 4
```
""")
    # hide-input hides the first; remove-output hides only outputs, so the other two are shown
    assert (result["code"], result["hidden_code"]) == (3, 1)
    assert result["prose"] == 0
    assert result["ratio"] == 0


def test_myst_comments_targets_and_cell_breaks_are_not_prose(tmp_path):
    result = counts(tmp_path, """
(sec-label)=
## Section

% a comment for the authors
<!-- an HTML comment -->
<!--
a longer one
-->
+++

Text with a (parenthesis)= inside is prose.
(not a target) at the start of a sentence is prose too.
""")
    assert result["prose"] == 3


def test_markdown_cells_tagged_hidden_are_not_prose(tmp_path):
    result = counts(tmp_path, """
Shown.

+++ {"tags": ["remove-cell"]}

Removed text.
More removed text.

```{code-cell} ipython3
x = 1
```

Shown again.
""")
    assert result["prose"] == 2


def test_directives_code_blocks_and_nested_fences(tmp_path):
    result = counts(tmp_path, """
```{figure} fig.png
:width: 80%
:name: fig-one

The caption is prose.
```

````{admonition} A note
:class: tip

Prose inside.

```bash
make book
make test
```
````

```{code-block} python
:linenos:
print(1)
```

$$a = b$$
""")
    # prose: caption, "Prose inside.", the display math; code: the two shell lines and print(1)
    assert result["prose"] == 3
    assert result["fenced_code"] == 3 and result["code"] == 3


def test_a_longer_fence_holds_backticks(tmp_path):
    result = counts(tmp_path, """
````{code-cell} ipython3
text = '''
```
'''
````

After.
""")
    assert (result["code"], result["prose"]) == (3, 1)


def test_no_code_gives_an_infinite_ratio(tmp_path):
    assert counts(tmp_path, "Just words.\n")["ratio"] == math.inf


def test_the_command_prints_a_row_per_notebook(tmp_path, capsys):
    low = write(tmp_path, "Text.\n\n```{code-cell} ipython3\na = 1\nb = 2\n```\n")
    assert pr.main([str(low)]) == 0
    assert pr.main([str(low), "--check"]) == 1
    out = capsys.readouterr().out
    assert "nb.md" in out and "0.50" in out and "below the target" in out


def test_the_notebook_sources_exist():
    names = [path.name for path in pr.notebook_sources()]
    assert len(names) >= 7 and names[0].startswith("01_"), names


@pytest.mark.parametrize("source", pr.notebook_sources(REPO), ids=lambda path: path.name)
def test_every_notebook_has_at_least_as_much_prose_as_visible_code(source):
    result = pr.prose_ratio(source)
    assert result["ratio"] >= pr.TARGET, (
        f"{source.name}: {result['prose']} prose lines for {result['code']} visible code lines "
        f"(ratio {result['ratio']:.2f}, target {pr.TARGET:g}); "
        "python -m bench.records.prose_ratio shows every notebook")
