"""One grammar for settings written as text: ``key=value`` on every command line and the values
of ``--config`` files.

``maskad train key=value``, ``maskad evaluate key=value``, ``maskad study -p key=value``,
``maskad baseline key=value`` and the string values of YAML configuration files are all read by
:func:`parse_value`:

========================================  ==============================================
text                                      value
========================================  ==============================================
``none``, ``null``, ``~`` (any case)      None
``true``, ``false`` (any case)            True, False
``3``, ``-2``                             an int
``0.5``, ``1e-3``, ``inf``, ``nan``       a float (validation refuses the non-finite ones)
``a,b`` or ``[a, b]``                     a list, each item read by these same rules
``'text'`` or ``"text"``                  the text inside the quotes, verbatim
anything else                             the text itself (stripped)
an empty value                            ``""``: each caller decides (maskad study refuses it)
========================================  ==============================================

The typed readers then give each value its setting's type: ``TrainConfig`` (``config._coerce``)
for the training settings, :func:`coerce_like` for a setting whose type is that of a reference
value (a study profile's own value, a command's default). A setting that holds text (a path, a
device) takes the text verbatim, commas included; only the words for None make it None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

NONE_WORDS = ("none", "null", "~")
BOOL_WORDS = {"true": True, "false": False}
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?\Z|[+-]?(inf|infinity|nan)\Z", re.I)


def split_assignments(items: Iterable[str] | Mapping | None) -> dict[str, object]:
    """``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": "3", "lr": "1e-3"}``: the values as written
    (a Mapping passes through). An item without ``=``, or with an empty key, is a ValueError
    naming it; a key given twice keeps its last value."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    if isinstance(items, str):
        items = [items]
    pairs: dict[str, object] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not of the form key=value")
        pairs[key.strip()] = value
    return pairs


def parse_assignments(items: Iterable[str] | Mapping | None) -> dict[str, object]:
    """``["epochs=3", "categories=bottle,screw", "data_root=none"]`` ->
    ``{"epochs": 3, "categories": ["bottle", "screw"], "data_root": None}`` (:func:`parse_value`);
    a Mapping passes through unchanged."""
    if isinstance(items, Mapping):
        return dict(items)
    return {key: parse_value(value) for key, value in split_assignments(items).items()}


def parse_value(text: str):
    """One value of the grammar (see the module's table): None, a bool, an int, a float, a list
    or the text."""
    if not isinstance(text, str):
        return text
    text = text.strip()
    if not text:
        return ""
    items = split_list(text)
    if items is not None:
        return [parse_value(item) for item in items]
    if _quoted(text):
        return text[1:-1]
    lowered = text.lower()
    if lowered in NONE_WORDS:
        return None
    if lowered in BOOL_WORDS:
        return BOOL_WORDS[lowered]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def split_list(text: str) -> list[str] | None:
    """The item texts of a list (``a,b`` or ``[a, b]``; commas inside quotes or inner brackets do
    not split), stripped, empty ones dropped, quotes kept; None when ``text`` is not a list."""
    text = text.strip()
    bracketed = len(text) >= 2 and text[0] == "[" and text[-1] == "]"
    body = text[1:-1] if bracketed else text
    items, current, depth, quote = [], "", 0, None
    for char in body:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"" and not current.strip():
            quote = char
        elif char in "[]":
            depth += 1 if char == "[" else -1
        elif char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += char
    items.append(current)
    if not bracketed and len(items) == 1:
        return None
    return [item.strip() for item in items if item.strip()]


def unquote(text: str) -> str:
    """``'a,b'`` -> ``a,b``; any other text stripped."""
    text = text.strip()
    return text[1:-1] if _quoted(text) else text


def _quoted(text: str) -> bool:
    return len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""


def coerce_like(key: str, value, reference):
    """``value`` (text of the grammar, or a Python value) as the type of ``reference``: an int
    setting takes integers (``1e3`` too), a float one any finite number, a text one the text
    verbatim, a list one a list or a single item (each item as the type of the reference's first
    item). A reference of None takes any value. ValueError names the key, the value as given and
    the type expected."""
    if reference is None:
        return parse_value(value)
    try:
        return _as_type_of(value, reference)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"bad value {_shown(value)} for {key}: expected {type_name(reference)}")


def _as_type_of(value, reference):
    parsed = parse_value(value)
    if isinstance(reference, list):
        texts = split_list(value) if isinstance(value, str) else None
        items = texts if texts is not None else parsed if isinstance(parsed, list) else [value]
        return [item if not reference else _as_type_of(item, reference[0]) for item in items]
    if isinstance(reference, str):
        if parsed is None or isinstance(parsed, list) or parsed == "":
            raise ValueError
        return unquote(value) if isinstance(value, str) else str(parsed)
    if isinstance(parsed, bool) or parsed is None or isinstance(parsed, (str, list)):
        if isinstance(reference, bool) and isinstance(parsed, bool):
            return parsed
        raise ValueError
    if isinstance(reference, bool) or not math.isfinite(parsed):
        raise ValueError
    if isinstance(reference, int):
        if float(parsed) != int(parsed):
            raise ValueError
        return int(parsed)
    return float(parsed)


def type_name(reference) -> str:
    """What a setting like ``reference`` takes, in words (for error messages)."""
    if isinstance(reference, bool):
        return "true or false"
    if isinstance(reference, list):
        inner = f" of {_plural(reference[0])}" if reference else ""
        return f"a list{inner} (a,b or [a, b])"
    return {int: "an integer", float: "a finite number", str: "a text"}.get(type(reference),
                                                                          type(reference).__name__)


def _plural(reference) -> str:
    return {bool: "true/false values", int: "integers", float: "numbers", str: "texts"}.get(
        type(reference), "values")


def _shown(value) -> str:
    return "none" if value is None else repr(value)
