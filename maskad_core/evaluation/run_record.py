"""A run's record: what a finished run keeps beside its weights, written by one function; training
then evaluation in one call; and the re-evaluation of a run from its record.

:func:`train_and_evaluate` is the one place that trains and then evaluates (the command line, the
study and the benchmarks call it). When a run is trained (or has copied a twin's training),
:func:`finish` fits the per-category map statistics the score standardises with on the run's
training images, saves them in the run folder (``map_statistics.pt``), scores the test split with
them, and :func:`write_record` writes ``scores.csv``, ``metrics.json`` and, last, ``DONE``.
``evaluate_run`` and ``score_images`` load the saved statistics, so neither needs the training
images again.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from maskad_core import scoring
from maskad_core.evaluation.evaluate import evaluate_model, fit_map_statistics
from maskad_core.evaluation.results import format_table, metrics_table
from maskad_core.training import runs
from maskad_core.training.config import SCORING_FIELDS, TrainConfig
from maskad_core.training.distributed import is_main_process
from maskad_core.training.runs import Run, load_run
from maskad_core.training.runtime import select_device, versions
from maskad_core.training.splits import data_root_of
from maskad_core.training.train import Callbacks, train

STATISTICS_FILE = "map_statistics.pt"
STATISTICS_FORMAT = 1
# Settings that change how a trained model is scored, not how it is trained.
EVAL_FIELDS = (*SCORING_FIELDS, "batch_size", "num_workers", "device")


class RunUnfinishedError(ValueError):
    """The run has not finished training: scoring it would report a model it does not hold."""


# ------------------------------------------------------------------ map statistics
def statistics_settings(config: TrainConfig) -> dict:
    """The settings that make the training images' maps what they are (beside the weights)."""
    return {"anomaly_map": config.anomaly_map, "smooth_sigma": config.smooth_sigma,
            "test_masking": config.eval_masking, "test_partitions": config.test_partitions,
            "eval_seed": config.eval_seed, "image_size": config.image_size}


def save_statistics(path: Path, statistics: scoring.MapStatistics, config: TrainConfig) -> None:
    runs.atomic_torch_save({"format": STATISTICS_FORMAT, "settings": statistics_settings(config),
                            **statistics.state()}, path / STATISTICS_FILE)


def load_statistics(path: Path, config: TrainConfig) -> scoring.MapStatistics | None:
    """The run folder's saved statistics, or None when it has none made with ``config``'s map."""
    file = path / STATISTICS_FILE
    if not file.is_file():
        return None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  whatever torch raises for a damaged file
        raise ValueError(f"{file} is unreadable ({type(error).__name__}): delete it (the next "
                         "evaluation fits the statistics again) or pass --refit-statistics") from None
    if state.get("format") != STATISTICS_FORMAT or state.get("settings") != statistics_settings(config):
        return None
    return scoring.MapStatistics.from_state(state)


def run_statistics(run: Run, config: TrainConfig, model, device, *, data_root=None,
                   refit: bool = False, final_weights: bool = True
                   ) -> tuple[scoring.MapStatistics | None, str]:
    """(statistics, where they come from) for scoring ``run``'s model under ``config``.

    The run's saved statistics when they fit the weights and the map; otherwise fitted now on the
    run's own training images (or, with ``refit``, on ``data_root``'s)."""
    if not scoring.standardizes(config.map_standardization):
        return None, "maps not standardised"
    if not refit and final_weights:
        saved = load_statistics(run.path, config)
        if saved is not None:
            return saved, f"the run's saved statistics ({STATISTICS_FILE})"
    root = data_root if refit and data_root is not None else data_root_of(run.config)
    why = ("refitted on request" if refit else
           "fitted now: the run keeps none for these weights and this map")
    return fit_map_statistics(model, config, root, device=device), f"{why}, on the training images of {root}"


# ------------------------------------------------------------------ the record
def write_record(path: Path, config: TrainConfig, evaluation: dict, scores: pd.DataFrame, *,
                 training: dict, data: dict, history: list[dict]) -> dict:
    """Write a finished run's scores.csv, metrics.json, then DONE; return the metrics."""
    evaluation = dict(evaluation)
    metrics = {
        "run": path.name,
        "config_hash": config.hash(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {**data, "test_counts": evaluation.pop("test_counts")},
        "training": training,
        "history": history,
        **evaluation,
        "versions": versions(),
        "config": config.to_dict(),
    }
    runs.write_csv(path / runs.SCORES_FILE, scores)
    runs.write_json(path / runs.METRICS_FILE, metrics)
    runs.atomic_write_text(path / runs.DONE_FILE, metrics["finished"] + "\n")
    return metrics


def finish(run: Run, device=None, quiet: bool = True) -> dict:
    """Evaluate a trained run with its own configuration: fit and save the map statistics, score
    the test split, write the record (see module doc); return the metrics."""
    config = run.config
    device = select_device(str(device) if device is not None else config.device)
    model = run.load_model(device)
    statistics = None
    if scoring.standardizes(config.map_standardization):
        statistics = fit_map_statistics(model, config, device=device)
        save_statistics(run.path, statistics, config)
    evaluation, scores = evaluate_model(model, config, device=device, quiet=quiet,
                                        statistics=statistics)
    evaluation["evaluation"]["map_statistics"] = (
        f"fitted at the end of training on its training images ({STATISTICS_FILE})"
        if statistics is not None else "maps not standardised")
    record = run.training
    return write_record(run.path, config, evaluation, scores, training=record["training"],
                        data=record["data"], history=record["history"])


def train_and_evaluate(config: TrainConfig, *, resume: bool = True, quiet: bool = False,
                       callbacks: Callbacks | None = None) -> Run:
    """Train ``config`` (or re-use its training, see ``training.train.train``), then evaluate it on
    the test split unless it is already; return the finished Run. In a distributed launch only
    the main process evaluates."""
    callbacks = callbacks or Callbacks()
    run = train(config, resume=resume, quiet=quiet, callbacks=callbacks)
    if run.done or not is_main_process():
        return run
    if callbacks.before_evaluation is not None:
        callbacks.before_evaluation()
    with runs.run_lock(run.path):
        if not run.done:  # another process may have evaluated it while this one waited
            finish(run, quiet=quiet)
    if not quiet:
        print(format_table(metrics_table(run.metrics)))
    return run


# ------------------------------------------------------------------ re-evaluation
def training_progress(run: Run) -> tuple[int, int]:
    """(epochs finished, epochs configured) of a run, from its record or its checkpoint."""
    total = run.config.epochs
    if run.trained:
        return total, total
    if not run.checkpoint_path.is_file():
        return 0, total
    return int(run.load_checkpoint()["epoch"]), total


def require_finished(run: Run, partial: bool = False) -> str:
    """'' for a finished run; for an unfinished one RunUnfinishedError, or with ``partial`` the
    note "partial: epoch k of n" that every output of its scoring carries."""
    if run.trained:
        return ""
    done, total = training_progress(run)
    if done == 0:
        raise RunUnfinishedError(f"run {run.path} has no finished epoch to score; train it first "
                                 f"(maskad train --config {run.path / runs.CONFIG_FILE})")
    if not partial:
        raise RunUnfinishedError(
            f"run {run.path} is unfinished (epoch {done} of {total}): finish it with maskad train "
            f"--config {run.path / runs.CONFIG_FILE} (it resumes), or pass --partial to score its "
            "last checkpoint")
    return f"partial: epoch {done} of {total}"


def scoring_config(run: Run, overrides: dict | list[str] | None) -> TrainConfig:
    """The run's configuration with evaluation settings (EVAL_FIELDS) changed; ValueError for a
    setting that would change the trained model."""
    if not overrides:
        return run.config
    keys = overrides.keys() if isinstance(overrides, dict) else [o.partition("=")[0].strip()
                                                                   for o in overrides]
    training_keys = [k for k in keys if k not in EVAL_FIELDS]
    if training_keys:
        raise ValueError(f"{', '.join(training_keys)} would change the trained model; evaluation "
                         f"can only change {', '.join(EVAL_FIELDS)}")
    return run.config.with_overrides(overrides).validate()


def evaluate_run(run, data_root: str | Path | None = None, *, device=None, quiet: bool = True,
                 overrides: dict | list[str] | None = None, epoch: int | None = None,
                 partial: bool = False, refit_statistics: bool = False) -> tuple[dict, pd.DataFrame]:
    """Evaluate a run (a Run, run folder or run id prefix) on ``data_root`` (default: the data it
    was trained on) with the run's saved map statistics. ``overrides`` may change the evaluation
    settings (EVAL_FIELDS) without retraining; ``epoch`` scores the weights kept after that epoch
    (one of ``run.snapshots()``); ``partial`` allows an unfinished run (its last checkpoint);
    ``refit_statistics`` fits the statistics on ``data_root``'s training images instead.
    Returns (metrics dict with the evaluation keys of metrics.json, scores DataFrame)."""
    run = run if isinstance(run, Run) else load_run(run)
    note = require_finished(run, partial) if epoch is None else ""
    config = scoring_config(run, overrides)
    device = select_device(str(device) if device is not None else config.device)
    model = run.load_model(device, epoch=epoch)
    statistics, origin = run_statistics(run, config, model, device, data_root=data_root,
                                        refit=refit_statistics,
                                        final_weights=epoch is None and not note)
    evaluation, scores = evaluate_model(model, config, data_root, device=device, quiet=quiet,
                                        statistics=statistics)
    evaluation["run"] = run.id
    evaluation["epoch"] = epoch if epoch is not None else training_progress(run)[0]
    evaluation["partial"] = note
    evaluation["evaluation"]["map_statistics"] = origin
    evaluation["evaluation"]["overrides"] = {k: getattr(config, k) for k in EVAL_FIELDS
                                             if getattr(config, k) != getattr(run.config, k)}
    return evaluation, scores
