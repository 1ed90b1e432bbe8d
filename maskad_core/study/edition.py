"""The book's editions: which code, notebooks and settings produced the executed notebooks.

``maskad study`` writes ``EDITION.json`` beside the executed notebooks: a fingerprint (sha256) of the
package's code and data files, of the notebook sources and of the profile's parameters, with the
date, the machine and the seconds each notebook took. The book build compares the fingerprint with
the files as they are now and says on every page, and in its log, when the edition was produced by
other code or settings (:func:`stale_parts`). ``make study`` regenerates the edition in place.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

EDITION_FILE = "EDITION.json"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CODE_SUFFIXES = (".py", ".yaml")


def _digest(paths: Iterable[Path], base: Path) -> str:
    """sha256 over the relative names and contents of ``paths`` (sorted): a rename counts too."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.relative_to(base).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _parameters_digest(params: Mapping) -> str:
    canonical = json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint(params: Mapping, notebooks_dir: str | Path) -> dict[str, str]:
    """{"code", "notebooks", "parameters"}: one sha256 each, of ``maskad_core``'s .py and .yaml files
    (but profiles.yaml), of the notebook sources (``*.md`` in ``notebooks_dir``) and of the profile's parameters."""
    notebooks_dir = Path(notebooks_dir)
    # profiles.yaml counts through the parameters: a profile's description (its measured times)
    # may change without making an edition stale
    code = [p for p in PACKAGE_DIR.rglob("*") if p.suffix in CODE_SUFFIXES
            and "__pycache__" not in p.parts and p.name != "profiles.yaml"]
    return {"code": _digest(code, PACKAGE_DIR),
            "notebooks": _digest(notebooks_dir.glob("*.md"), notebooks_dir),
            "parameters": _parameters_digest(params)}


def write_edition(executed_dir: str | Path, profile: str, params: Mapping, notebooks_dir: str | Path,
                  seconds: Mapping[str, float], machine: str) -> Path:
    """Write EDITION.json into ``executed_dir`` and return its path."""
    record = {"profile": profile, "parameters": dict(params),
              "fingerprint": fingerprint(params, notebooks_dir),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine,
              "seconds": {name: round(value, 1) for name, value in seconds.items()}}
    path = Path(executed_dir) / EDITION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    return path


def read_edition(executed_dir: str | Path) -> dict | None:
    path = Path(executed_dir) / EDITION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def stale_parts(executed_dir: str | Path, notebooks_dir: str | Path) -> list[str] | None:
    """What differs between the edition in ``executed_dir`` and the sources now: a subset of
    ["code", "notebooks", "parameters"] (empty: the edition is current), or None when there is no
    edition. "parameters" compares with the profile as ``profiles.yaml`` defines it now, so an
    edition made with ``-p`` overrides is reported too."""
    from maskad_core.study.profiles import load_profile

    edition = read_edition(executed_dir)
    if edition is None:
        return None
    try:
        params = load_profile(edition["profile"])
    except ValueError:  # the profile no longer exists
        params = {}
    now = fingerprint(params, notebooks_dir)
    return [part for part in ("code", "notebooks", "parameters")
            if edition["fingerprint"].get(part) != now[part]]


def staleness_message(parts: list[str] | None, edition: dict | None) -> str:
    """One sentence for the page and the log: whether the executed notebooks match the sources."""
    if parts is None or edition is None:
        return ("No reference edition: the executed notebooks were not produced by `maskad study` "
                "(no EDITION.json).")
    made = f"the {edition['profile']} edition of {edition['date']}"
    if not parts:
        return f"This book shows {made}, produced by the code, notebooks and settings committed with it."
    return (f"This book shows {made}, produced by other {', '.join(parts)} than those in this "
            "repository now: its numbers may not match the sources. `make study` regenerates it.")
