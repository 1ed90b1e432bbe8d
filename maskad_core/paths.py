"""Where maskad keeps what it generates (runs and data under one home folder), and where it lives."""

from __future__ import annotations

import os
from pathlib import Path

#: The source tree holding this package (notebooks/, the book, bench/); relative data roots of
#: the study's profiles are taken from here.
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def maskad_home() -> Path:
    """The folder named by MASKAD_HOME, else ``~/.cache/maskad`` (XDG_CACHE_HOME respected)."""
    env = os.environ.get("MASKAD_HOME")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "maskad"


def runs_dir() -> Path:
    return maskad_home() / "runs"


def data_dir() -> Path:
    return maskad_home() / "data"
