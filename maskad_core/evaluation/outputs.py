"""The output folders of ``maskad evaluate`` and ``maskad score``: checked before any work so that
writing them never destroys what the command did not write.

A folder may be written when it is new, empty, or a previous output of the same command: the
command leaves a manifest (``MANIFEST``, the files it wrote) in every output folder, and a folder
holding anything the manifest does not list is the user's and is refused. Never accepted: the
current folder or one above it (it cannot be replaced), a folder that is or holds one of the
command's inputs, and a run folder or a folder inside one (except the evaluation's own
``RUN/evaluate``). While a command writes a folder it holds a lock beside it, so that a second
command writing the same folder at the same time is refused instead of both reporting success.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

MANIFEST = ".maskad-output.json"
RUN_MARKERS = ("config.yaml", "checkpoints")  # what makes a folder a run folder (training.runs)


class OutputFolderError(ValueError):
    """An output folder that writing would damage, or that another command is writing."""


def is_output_folder(folder: Path, command: str | None = None) -> bool:
    """``folder`` holds a manifest written by ``command`` (any command when None)."""
    try:
        record = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and (command is None or record.get("command") == command)


def _manifest_files(folder: Path) -> set[str]:
    try:
        files = json.loads((folder / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {str(f) for f in files} if isinstance(files, list) else set()


def _foreign_entry(folder: Path, command: str, own: Iterable[str]) -> str | None:
    """The first entry of ``folder`` that a previous ``command`` did not write, None if there is none."""
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return None
    written = _manifest_files(folder) if is_output_folder(folder, command) else set(own)
    return next((name for name in entries if name != MANIFEST and name not in written), None)


def _run_folder_at_or_above(path: Path) -> Path | None:
    for folder in (path, *path.parents):
        if all((folder / marker).exists() for marker in RUN_MARKERS):
            return folder
    return None


def check_output_folder(out: str | Path, command: str, *, inputs: Iterable[str | Path] = (),
                        own: Iterable[str] = (), allowed_in_run: Path | None = None,
                        option: str = "--out") -> Path:
    """``out`` as a Path after the checks of this module's doc; OutputFolderError (one line
    naming ``option``, the folder and the fix) otherwise. ``own`` names files an older version of
    ``command`` wrote without a manifest (accepted as previous output); ``allowed_in_run`` is the
    one folder inside a run folder the command may write (evaluate's ``RUN/evaluate``)."""
    out = Path(out).expanduser()
    where = f"{option} {out}"
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"{where} is an existing file; name a folder")
    resolved = out.resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise OutputFolderError(f"{where} is the current folder or one above it, which {command} "
                                "cannot replace; name a new subfolder")
    for item in inputs:
        source = Path(item).expanduser().resolve()
        if source == resolved or resolved in source.parents:
            raise OutputFolderError(f"{where} is or holds the input {item}; name a folder outside "
                                    "the inputs")
    run = _run_folder_at_or_above(resolved)
    if run is not None and (allowed_in_run is None or resolved != Path(allowed_in_run).resolve()):
        raise OutputFolderError(f"{where} is {'a run folder' if run == resolved else 'inside the run folder ' + str(run)}, "
                                "which only training writes; name a folder outside the runs")
    if out.is_dir():
        foreign = _foreign_entry(out, command, own)
        if foreign is not None:
            raise OutputFolderError(f"{where} holds {foreign}, which maskad {command} did not write; "
                                    "name a new or empty folder (nothing was written)")
    return out


def write_manifest(folder: Path, command: str, files: Iterable[str]) -> None:
    """The manifest naming the files ``command`` writes into ``folder`` (written before them, so
    that an interrupted output is still recognised as the command's own)."""
    from maskad_core.training.runs import write_json

    write_json(folder / MANIFEST, {"command": command, "files": sorted(set(files))})


@contextlib.contextmanager
def output_lock(out: Path, command: str) -> Iterator[None]:
    """Hold a lock for writing ``out`` (a hidden file beside it, removed after): a second command
    writing the same folder meanwhile gets OutputFolderError at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    handle = open(lock, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputFolderError(f"--out {out} is being written by another maskad {command} "
                                    f"(lock {lock} is held); wait for it or name another folder") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
    finally:
        handle.close()


def make_folder_beside(out: Path, tag: str) -> Path:
    """A new empty folder beside ``out`` (hidden, named after it and ``tag``), created with the
    permissions the umask gives a new folder (tempfile.mkdtemp would give 0700)."""
    while True:
        folder = out.parent / f".{out.name}.{tag}-{secrets.token_hex(4)}"
        try:
            os.mkdir(folder, 0o777)
        except FileExistsError:
            continue
        return folder
