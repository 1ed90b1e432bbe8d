"""Where maskad keeps what it generates: runs and data under one home folder."""

from __future__ import annotations

import os
from pathlib import Path


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
