"""Run folders: naming by hash (settings and data), lookup by path or id prefix, atomic writes, the
training lock."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from maskad_core.training import runs, splits
from maskad_core.training.config import TrainConfig


def _fake_run(config: TrainConfig):
    path = runs.run_path(config)
    path.mkdir(parents=True)
    config.to_yaml(path / runs.CONFIG_FILE)
    return path


def test_run_folder_is_named_by_the_config_hash_and_the_data(home, data_root):
    config = TrainConfig(epochs=3, data_root=str(data_root))
    digest = splits.data_fingerprint(config)["digest"]
    expected = hashlib.sha256(f"{config.hash()}:{digest}".encode()).hexdigest()[:12]
    assert runs.run_path(config) == home / "runs" / expected
    assert runs.run_id(config) != runs.run_id(TrainConfig(epochs=4, data_root=str(data_root)))
    assert runs.run_id(config, {"digest": "other data"}) != runs.run_id(config)


def test_runs_are_found_by_path_or_id_prefix(home, data_root):
    config = TrainConfig(epochs=3, data_root=str(data_root))
    path = _fake_run(config)
    assert runs.resolve_run(path) == path
    assert runs.resolve_run(path.name[:5]) == path
    run = runs.load_run(path.name)
    assert run.config == config and not run.done
    (path / runs.DONE_FILE).write_text("x")
    assert run.done


def test_missing_or_ambiguous_runs_are_clear_errors(home, tmp_path, data_root):
    with pytest.raises(FileNotFoundError, match="no run 'abc'"):
        runs.resolve_run("abc")
    with pytest.raises(FileNotFoundError, match="is not a run folder"):
        runs.resolve_run(tmp_path)
    paths = [_fake_run(TrainConfig(epochs=e, data_root=str(data_root))) for e in range(1, 40)]
    first_chars = [p.name[0] for p in paths]
    shared = max(set(first_chars), key=first_chars.count)  # 39 ids, 16 hex digits: one repeats
    with pytest.raises(ValueError, match=f"run prefix '{shared}' is ambiguous"):
        runs.resolve_run(shared)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        runs.load_run(paths[0]).load_model()


def test_atomic_save_replaces_whole_files_and_keeps_the_old_one_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "last.pt"
    runs.atomic_torch_save({"epoch": 1, "w": torch.ones(3)}, target)
    runs.atomic_torch_save({"epoch": 2, "w": torch.zeros(3)}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 2

    def failing_save(obj, path):
        with open(path, "wb") as handle:
            handle.write(b"half a checkp")
        raise OSError("disk full")

    monkeypatch.setattr(runs.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        runs.atomic_torch_save({"epoch": 3}, target)
    assert torch.load(target, weights_only=True)["epoch"] == 2  # the old checkpoint survives
    assert [p.name for p in target.parent.iterdir()] == ["last.pt"]  # no temporary files left


def test_json_keeps_nan_and_plain_numbers(tmp_path):
    path = tmp_path / "metrics.json"
    runs.write_json(path, {"pixel_auroc": float("nan"), "n": torch.tensor(3), "ok": 0.5})
    back = runs.read_json(path)
    assert math.isnan(back["pixel_auroc"]) and back["n"] == 3 and back["ok"] == 0.5
    with pytest.raises(FileNotFoundError, match="is the run finished"):
        runs.read_json(tmp_path / "absent.json")


def test_lock_admits_one_trainer_at_a_time(tmp_path):
    with runs.run_lock(tmp_path / "run"):
        with pytest.raises(runs.RunLockedError, match="another process"):
            with runs.run_lock(tmp_path / "run"):
                pass
    with runs.run_lock(tmp_path / "run"):  # released again
        pass


def test_load_model_reads_the_weights_without_the_optimiser_state(home, monkeypatch, data_root):
    """The checkpoint is memory-mapped and only its model entry is used: the AdamW moments (twice
    the model) are never read into memory just to score with the weights."""
    from maskad_core.model import build_model

    config = TrainConfig(image_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                         decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
                         data_root=str(data_root)).validate()
    path = runs.run_path(config)
    runs.atomic_write_text(path / runs.CONFIG_FILE, config.to_yaml())
    torch.manual_seed(0)
    model = build_model(config)
    moments = {"state": {0: {"exp_avg": torch.ones(10_000), "exp_avg_sq": torch.ones(10_000)}}}
    runs.atomic_torch_save({"model": model.state_dict(), "optimizer": moments}, path / runs.CHECKPOINT_FILE)
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: calls.append(kwargs) or real_load(*args, **kwargs))
    loaded = runs.Run(path).load_model()
    assert calls == [{"map_location": "cpu", "weights_only": True, "mmap": True}]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values(), strict=True))
    assert not loaded.training
