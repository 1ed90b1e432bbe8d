"""Run folders: where a training run's record lives and how to read it back.

A run lives in ``runs_dir()/<config hash[:12]>/`` and holds::

    config.yaml         the TrainConfig (all settings)
    checkpoints/last.pt model, optimiser, scheduler, RNG states, history; rewritten atomically each epoch
    metrics.json        training record, data description, per-category evaluation, versions
    history.csv         loss components per epoch
    scores.csv          one row per test image: path, category, defect_type, label, score_<reduction>
    DONE                written last: the run is finished and is re-used instead of trained again

A run that differs from a finished one only in how it is scored (``config.SCORING_FIELDS``) gets its
own folder with the finished run's training (``find_trained_twin``, ``copy_training``) and its own
evaluation: changing the score never retrains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch

from maskad_core.config import TrainConfig
from maskad_core.model import build_model
from maskad_core.paths import runs_dir

RUN_ID_LENGTH = 12
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoints/last.pt"
SNAPSHOT_FILE = "checkpoints/model_epoch_{epoch:04d}.pt"  # weights only, for pictures of training
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SCORES_FILE = "scores.csv"
DONE_FILE = "DONE"
LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another process is training the same run."""


def run_id(config: TrainConfig) -> str:
    return config.hash()[:RUN_ID_LENGTH]


def run_path(config: TrainConfig) -> Path:
    return runs_dir() / run_id(config)


def resolve_run(ref: str | Path) -> Path:
    """A run folder from a path, or from a (prefix of a) run id under runs_dir()."""
    candidate = Path(ref).expanduser()
    if (candidate / CONFIG_FILE).is_file():
        return candidate
    if candidate.exists():
        raise FileNotFoundError(f"{candidate} is not a run folder (it has no {CONFIG_FILE})")
    text = str(ref)
    if os.sep not in text and text:
        root = runs_dir()
        matches = sorted(p for p in root.glob(f"{text}*") if (p / CONFIG_FILE).is_file()) if root.is_dir() else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(p.name for p in matches)
            raise ValueError(f"run prefix {text!r} is ambiguous: {names}")
        raise FileNotFoundError(f"no run {text!r}: not a folder, and no run id under {root} starts with it")
    raise FileNotFoundError(f"no run folder {candidate}")


class Run:
    """A run folder, read lazily. ``metrics``, ``scores`` and ``history`` re-read the files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        state = "done" if self.done else "unfinished"
        return f"Run({str(self.path)!r}, {state})"

    @property
    def id(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> TrainConfig:
        return TrainConfig.from_yaml(self.path / CONFIG_FILE)

    @property
    def done(self) -> bool:
        return (self.path / DONE_FILE).is_file()

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def metrics(self) -> dict:
        return read_json(self.path / METRICS_FILE)

    @property
    def scores(self) -> pd.DataFrame:
        return pd.read_csv(self.path / SCORES_FILE)

    @property
    def history(self) -> pd.DataFrame:
        return pd.read_csv(self.path / HISTORY_FILE)

    def load_checkpoint(self, map_location="cpu") -> dict:
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"run {self.path} has no checkpoint ({CHECKPOINT_FILE})")
        return torch.load(self.checkpoint_path, map_location=map_location, weights_only=True)

    def load_weights(self) -> dict:
        """The model's weights from the last checkpoint, without reading the rest of it.

        The file is memory-mapped and only the model's tensors are touched: the optimiser state
        (twice the model's size under AdamW) and the history are never read from disk.
        """
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"run {self.path} has no checkpoint ({CHECKPOINT_FILE})")
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True, mmap=True)["model"]

    def snapshots(self) -> list[int]:
        """The epochs whose weights the run kept (see snapshot_epochs), in order."""
        found = self.path.glob(SNAPSHOT_FILE.split("/")[0] + "/model_epoch_*.pt")
        return sorted(int(f.stem.rsplit("_", 1)[1]) for f in found)

    def load_model(self, device="cpu", epoch: int | None = None):
        """The trained MaskedAutoencoder (eval mode) on ``device``; with ``epoch``, the weights
        kept after that epoch (one of ``snapshots()``)."""
        model = build_model(self.config)
        if epoch is None:
            state = self.load_weights()
        else:
            path = self.path / SNAPSHOT_FILE.format(epoch=int(epoch))
            if not path.is_file():
                raise FileNotFoundError(f"run {self.path} kept no weights for epoch {epoch}; "
                                        f"it has epochs {self.snapshots() or 'none'}")
            state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model.to(device).eval()


def snapshot_epochs(epochs: int) -> list[int]:
    """Epochs (counted from 1) after which training keeps a copy of the weights: the first, a
    quarter, half way and the last, so that notebooks can show reconstructions over training."""
    return sorted({e for e in (1, round(epochs / 4), round(epochs / 2), epochs) if 1 <= e <= epochs})


def find_trained_twin(config: TrainConfig) -> Run | None:
    """A finished run trained exactly as ``config`` (same ``training_settings``) that may differ in
    how it was scored; None if there is none. Its weights are the ones ``config`` would train."""
    root = runs_dir()
    if not root.is_dir():
        return None
    wanted = config.training_settings()
    for folder in sorted(root.iterdir()):
        if not ((folder / DONE_FILE).is_file() and (folder / CONFIG_FILE).is_file()):
            continue
        try:
            candidate = TrainConfig.from_yaml(folder / CONFIG_FILE)
        except (ValueError, TypeError):  # a run of another version's settings: not a twin
            continue
        if candidate.training_settings() == wanted:
            return Run(folder)
    return None


def copy_training(source: Path, target: Path) -> None:
    """The training part of a run folder (checkpoints, history.csv) into another, hard-linked where
    the file system allows (the files are never rewritten in place, only replaced)."""
    files = [p for p in (source / CHECKPOINT_FILE).parent.glob("*.pt")] + [source / HISTORY_FILE]
    for file in files:
        destination = target / file.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.unlink(missing_ok=True)
        try:
            os.link(file, destination)
        except OSError:
            shutil.copy2(file, destination)


def load_run(ref: str | Path) -> Run:
    """A Run from a run folder path or a run id prefix."""
    return Run(resolve_run(ref))


# ------------------------------------------------------------------ atomic files
def _temporary_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = _temporary_beside(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half-written file."""
    tmp = _temporary_beside(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    # NaN stays NaN (Python's json reads it back); values are plain floats, lists and dicts.
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (is the run finished?)")
    return json.loads(path.read_text())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ------------------------------------------------------------------ locking
@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder; a second trainer gets RunLockedError at once."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock, training twice at once is the user's business
        yield
        return
    handle = open(path / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run {path} is being trained by another process (lock {path / LOCK_FILE} is held)"
            ) from None
        yield
    finally:
        handle.close()
