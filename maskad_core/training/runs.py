"""Run folders: where a training run's record lives and how to read it back.

A run lives in ``runs_dir()/<run id>/``, the id the first 12 hex of sha256 of the configuration's
hash and its data's digest (``splits.data_fingerprint``): the same settings on changed data are
another run. The folder holds::

    config.yaml         the TrainConfig (all settings)
    data.json           the data's fingerprint (digest, file counts) the run was trained on
    checkpoints/last.pt model, optimiser, scheduler, RNG states, history; rewritten atomically each epoch
    history.csv         loss components per epoch
    training.json       written when training ends: training record, data description, history;
                        the run is trained and is re-used instead of trained again
    metrics.json        (evaluation) training record, data description, per-category evaluation
    scores.csv          (evaluation) one row per test image: path, category, label, scores
    DONE                (evaluation) written last: the run is trained and evaluated

Training writes the folder up to ``training.json``; :mod:`maskad_core.evaluation.run_record` adds
the evaluation. A run that differs from a trained one only in how it is scored
(``config.SCORING_FIELDS``) gets its own folder with the trained run's training
(``find_trained_twin``, ``copy_training``) and its own evaluation: changing the score never
retrains. A twin must have been trained on the same data.

Files are written atomically (``atomic_*``) with the permissions the user's umask gives a new file;
``load_checkpoint_file`` turns a truncated or corrupt checkpoint into a one-line error naming the file and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import pickle
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import pandas as pd
import torch

from maskad_core.data.paths import runs_dir, writable_dir
from maskad_core.model import build_model
from maskad_core.training.config import TrainConfig
from maskad_core.training.json_safe import json_safe
from maskad_core.training.splits import data_fingerprint

RUN_ID_LENGTH = 12
CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoints/last.pt"
SNAPSHOT_FILE = "checkpoints/model_epoch_{epoch:04d}.pt"  # weights only, for pictures of training
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
SCORES_FILE = "scores.csv"
DONE_FILE = "DONE"
TRAINING_FILE = "training.json"
DATA_FILE = "data.json"
LOCK_FILE = ".lock"
# What torch.load raises on a truncated or corrupt file (OSError "Invalid argument" included).
_CORRUPT_ERRORS = (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError,
                   zipfile.BadZipFile)


class RunLockedError(RuntimeError):
    """Another process is training the same run."""


class CheckpointError(ValueError):
    """A checkpoint file is truncated or corrupt."""


def run_id(config: TrainConfig, fingerprint: dict | None = None) -> str:
    """The first 12 hex of sha256 of ``config.hash()`` and the data's digest; ``fingerprint`` is
    ``splits.data_fingerprint(config)``, computed here when not given (it lists the data files)."""
    if fingerprint is None:
        fingerprint = data_fingerprint(config)
    identity = f"{config.hash()}:{fingerprint['digest']}"
    return hashlib.sha256(identity.encode()).hexdigest()[:RUN_ID_LENGTH]


def run_path(config: TrainConfig, fingerprint: dict | None = None) -> Path:
    return runs_dir() / run_id(config, fingerprint)


def write_data_record(path: Path, fingerprint: dict) -> None:
    """The data's fingerprint into the run folder (``data.json``): call when training starts."""
    write_json(Path(path) / DATA_FILE, fingerprint)


def read_data_record(path: Path) -> dict | None:
    """The fingerprint a run folder records (``data.json``), None when it has none readable."""
    try:
        record = json.loads((Path(path) / DATA_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


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
        state = "done" if self.done else "trained" if self.trained else "unfinished"
        return f"Run({str(self.path)!r}, {state})"

    @property
    def id(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> TrainConfig:
        return TrainConfig.from_yaml(self.path / CONFIG_FILE)

    @property
    def done(self) -> bool:
        """Trained and evaluated."""
        return (self.path / DONE_FILE).is_file()

    @property
    def trained(self) -> bool:
        """Training has finished (its record is written); the run may not be evaluated yet."""
        return (self.path / TRAINING_FILE).is_file() or self.done

    @property
    def training(self) -> dict:
        """{"training", "data", "history"}: what training recorded (see write_training_record)."""
        if (self.path / TRAINING_FILE).is_file():
            return read_json(self.path / TRAINING_FILE)
        metrics = self.metrics  # a run evaluated before training kept its own record
        return {"training": metrics["training"], "history": metrics["history"],
                "data": {k: v for k, v in metrics["data"].items() if k != "test_counts"}}

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
        return load_checkpoint_file(self.checkpoint_path, map_location=map_location)

    def load_weights(self) -> dict:
        """The model's weights from the last checkpoint, without reading the rest of it.

        The file is memory-mapped and only the model's tensors are touched: the optimiser state
        (twice the model's size under AdamW) and the history are never read from disk.
        """
        if not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"run {self.path} has no checkpoint ({CHECKPOINT_FILE})")
        return load_checkpoint_file(self.checkpoint_path, mmap=True)["model"]

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
            state = load_checkpoint_file(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as error:  # config.yaml's widths edited by hand: the weights do not fit
            first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line
                          or "Missing key" in line or "Unexpected key" in line), "")
            raise CheckpointError(f"run {self.path}: its {CONFIG_FILE} does not describe the model in "
                                  f"its checkpoint ({first[:160]}); restore the {CONFIG_FILE} "
                                  "training wrote, or train the changed settings as a new run") from None
        return model.to(device).eval()


def snapshot_epochs(epochs: int) -> list[int]:
    """Epochs (counted from 1) after which training keeps a copy of the weights: a log-spaced grid
    (1, 2, 5, 10, 20, 50, ...), a quarter, half way and the last, so that notebooks can show
    reconstructions over training and a long run yields a curve of what each step of compute buys."""
    grid = {m * 10 ** k for k in range(len(str(max(epochs, 1)))) for m in (1, 2, 5)}
    wanted = grid | {round(epochs / 4), round(epochs / 2), epochs}
    return sorted(e for e in wanted if 1 <= e <= epochs)


def write_training_record(path: Path, training: dict, data: dict, history: list[dict]) -> None:
    """history.csv, then training.json (last: its presence says the run is trained)."""
    write_csv(path / HISTORY_FILE, pd.DataFrame(history))
    write_json(path / TRAINING_FILE, {"training": training, "data": data, "history": history})


def find_trained_twin(config: TrainConfig, fingerprint: dict | None = None) -> Run | None:
    """A trained run trained exactly as ``config`` (same ``training_settings``) on the same data
    (its ``data.json`` has the digest of ``fingerprint``, by default ``data_fingerprint(config)``)
    that may differ in how it was scored; None if there is none. Its weights are the ones
    ``config`` would train. A run without a data record is never a twin."""
    root = runs_dir()
    if not root.is_dir():
        return None
    wanted = config.training_settings()
    digest = (fingerprint if fingerprint is not None else data_fingerprint(config))["digest"]
    for folder in sorted(root.iterdir()):
        if not (Run(folder).trained and (folder / CONFIG_FILE).is_file()):
            continue
        if (read_data_record(folder) or {}).get("digest") != digest:
            continue
        try:
            candidate = TrainConfig.from_yaml(folder / CONFIG_FILE)
        except (ValueError, TypeError):  # a run of another version's settings: not a twin
            continue
        if candidate.training_settings() == wanted:
            return Run(folder)
    return None


def copy_training(source: Path, target: Path) -> None:
    """The training part of a run folder (checkpoints, history.csv, the data record data.json)
    into another, hard-linked where the file system allows (the files are never rewritten in
    place, only replaced), then its training record with ``trained_in`` naming the source. The
    copy is a twin's training, so it is a twin candidate itself."""
    files = [p for p in (source / CHECKPOINT_FILE).parent.glob("*.pt")] + [source / HISTORY_FILE]
    files += [source / DATA_FILE] if (source / DATA_FILE).is_file() else []
    record = Run(source).training
    for file in files:
        destination = target / file.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.unlink(missing_ok=True)
        try:
            os.link(file, destination)
        except OSError:
            shutil.copy2(file, destination)
    record["training"] = {**record["training"], "trained_in": record["training"].get("trained_in", source.name)}
    write_json(target / TRAINING_FILE, record)


def load_run(ref: str | Path) -> Run:
    """A Run from a run folder path or a run id prefix."""
    return Run(resolve_run(ref))


# ------------------------------------------------------------------ checkpoints
def load_checkpoint_file(path: str | Path, map_location="cpu", *, mmap: bool = False) -> dict:
    """``torch.load`` of a checkpoint (weights only); CheckpointError naming the file and the fix
    when it is truncated or corrupt (FileNotFoundError when it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    options = {"map_location": map_location, "weights_only": True}
    if mmap:
        options["mmap"] = True
    try:
        return torch.load(path, **options)
    except PermissionError:
        raise CheckpointError(f"checkpoint {path} cannot be read (permission denied): fix its "
                              "permissions") from None
    except _CORRUPT_ERRORS as error:
        reason = " ".join(str(error).split()).split(". ")[0][:120] or type(error).__name__
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(error).__name__}: {reason}); "
            "train the run again from scratch with `maskad train ... --restart` and the same "
            f"settings (a finished run: delete its folder {folder} first)"
        ) from None


# ------------------------------------------------------------------ atomic files
def _temporary_beside(path: Path) -> Path:
    """A new empty file beside ``path``, created with mode 0o666 so that the kernel applies the
    umask (and any default ACL): the replaced file ends with the permissions of a normal new file
    (0666 & ~umask), readable by colleagues sharing a MASKAD_HOME under umask 022."""
    folder = writable_dir(path.parent, "folder")
    while True:
        name = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            handle = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(handle)
        return name


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
    """torch.save to a temporary file in the same folder, then rename: never a half-written file.
    torch reports a failed write (a full disk) as RuntimeError: raised here as the OSError it is."""
    tmp = _temporary_beside(path)
    try:
        try:
            torch.save(obj, tmp)
        except RuntimeError as error:
            if "write" not in str(error).lower():
                raise
            full = shutil.disk_usage(tmp.parent).free < 64 * 2 ** 20
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          "No space left on device" if full else "writing failed", str(path)) from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    # NaN stays NaN (Python's json reads it back; the study's readers take it as a float): writing
    # null instead (issue 29) waits for those readers to take None
    text = json.dumps(json_safe(data, keep_nan=True), indent=2, sort_keys=False)
    atomic_write_text(path, text + "\n")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (is the run finished?)")
    return json.loads(path.read_text())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


# ------------------------------------------------------------------ locking
@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run folder; a second trainer gets RunLockedError at once. The
    folder is created; paths.UserPathError when it cannot be or is not writable."""
    writable_dir(path, "run folder")
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
