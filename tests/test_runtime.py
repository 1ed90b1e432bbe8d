"""maskad_core.training.runtime: the GPU code paths, checked on a CPU with the device faked."""

from __future__ import annotations

import contextlib

import pytest
import torch

from maskad_core.training import runtime


def test_autocast_is_bfloat16_on_cuda_and_nothing_elsewhere():
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        cuda = runtime.autocast(torch.device("cuda", 0))  # without CUDA torch warns and disables it
    assert isinstance(cuda, torch.autocast) and cuda.device == "cuda" and cuda.fast_dtype == torch.bfloat16
    assert isinstance(runtime.autocast(torch.device("cpu")), contextlib.nullcontext)


def test_auto_device_is_the_processs_gpu_when_cuda_is_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.select_device("auto", local_rank=3) == torch.device("cuda", 3)
    assert runtime.select_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert runtime.select_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.select_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.select_device("cuda")


def test_deterministic_kernels_on_cpu_only_and_restored_afterwards():
    before = torch.are_deterministic_algorithms_enabled()
    with runtime.deterministic(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
    with runtime.deterministic(torch.device("cuda", 0)):
        assert torch.are_deterministic_algorithms_enabled() == before  # GPUs keep their fast kernels
    assert torch.are_deterministic_algorithms_enabled() == before


def test_deterministic_does_not_fill_new_tensors_and_restores_the_setting():
    fill = torch.utils.deterministic.fill_uninitialized_memory
    with runtime.deterministic(torch.device("cpu")):
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert torch.utils.deterministic.fill_uninitialized_memory == fill


def test_seeds_are_the_same_in_every_process_and_differ_by_part():
    assert runtime.derive_seed(0, "masks", 1, 0) == runtime.derive_seed(0, "masks", 1, 0)
    assert runtime.derive_seed(0, "masks", 1, 0) != runtime.derive_seed(0, "masks", 1, 1)
    assert 0 <= runtime.derive_seed("x") < 2**63
