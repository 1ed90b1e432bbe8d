"""Where maskad keeps what it generates (runs and data under one home folder), and where it lives."""

from __future__ import annotations

import os
from pathlib import Path

#: The source tree holding this package (notebooks/, the book, bench/); relative data roots of
#: the study's profiles are taken from here.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


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


class UserPathError(ValueError):
    """A folder maskad must write to is a file, cannot be created or is not writable: the user's
    to fix (the command line prints the message on one line, no traceback)."""


HOME_HINT = "set MASKAD_HOME to a folder you can write, or fix this one's permissions"


def writable_dir(path: str | Path, what: str, hint: str = HOME_HINT) -> Path:
    """``path`` as a folder this process can write to, created (with its parents) if needed.

    UserPathError naming ``what``, the path and ``hint`` (the fix) when the path, or a folder
    above it, is a file, when it cannot be created, or when it is not writable.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserPathError(f"{what} {path} is a file, not a folder: move the file away or {hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a broken link, or a file above it
        raise UserPathError(f"{what} {path} cannot be created (a file or broken link is in the way): "
                            f"{hint}") from None
    except OSError as error:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file" if blocker else error.strerror or type(error).__name__
        raise UserPathError(f"{what} {path} cannot be created ({reason}): {hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserPathError(f"{what} {path} is not writable by this user: {hint}")
    return path


def ensure_home() -> Path:
    """maskad's home (MASKAD_HOME) and its runs/ folder, created and checked writable: call before
    creating a run, so that a wrong MASKAD_HOME is one clear error (UserPathError)."""
    home = writable_dir(maskad_home(), "maskad's home folder (MASKAD_HOME)")
    writable_dir(runs_dir(), "maskad's runs folder")
    return home
