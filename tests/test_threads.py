"""torch's thread count per task: one image with one thread, overrides, the probe, the CLI flag."""

import pytest
import torch

from maskad_core.cli.main import main
from maskad_core.training import threads


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)


def test_one_image_is_scored_with_one_thread_and_the_rest_by_the_probe(monkeypatch):
    monkeypatch.setattr(threads, "probe_threads", lambda cores=None: 7)
    assert threads.choose_threads("score-one") == 1
    assert threads.choose_threads("score-batch") == 7
    assert threads.choose_threads("train") == 7


def test_requested_then_environment_override_the_rule(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.choose_threads("score-one") == 3
    assert threads.choose_threads("train", requested=2) == 2
    monkeypatch.setenv(threads.THREADS_ENV, "two")
    with pytest.raises(ValueError, match="MASKAD_THREADS='two' is not a whole number >= 1"):
        threads.choose_threads("train")
    with pytest.raises(ValueError, match="thread task 'fit' is not one of: score-one"):
        threads.choose_threads("fit")


def test_threads_for_sets_and_restores_and_leaves_a_gpu_alone():
    before = torch.get_num_threads()
    with threads.threads_for("score-one") as chosen:
        assert chosen == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with threads.threads_for("score-one", device="cuda") as chosen:
        assert chosen == before == torch.get_num_threads()


def test_probe_chooses_one_or_every_core_and_restores_the_setting(monkeypatch):
    monkeypatch.setattr(threads, "_probed", {})
    before = torch.get_num_threads()
    assert threads.probe_threads(cores=1) == 1
    assert threads.probe_threads(cores=2) in (1, 2)
    assert torch.get_num_threads() == before
    # a second thread that is not THREADS_MIN_GAIN times faster is not taken
    monkeypatch.setattr(threads, "_busy_cores", lambda: 0.0)
    monkeypatch.setattr(threads, "_probed", {})
    monkeypatch.setattr(threads, "_probe_seconds", lambda t, *a: 1.0 if t == 1 else 0.9)
    assert threads.probe_threads(cores=2) == 1
    monkeypatch.setattr(threads, "_probed", {})
    monkeypatch.setattr(threads, "_probe_seconds", lambda t, *a: 1.0 if t == 1 else 0.5)
    assert threads.probe_threads(cores=2) == 2
    # other work holding a core: one thread, without timing anything
    monkeypatch.setattr(threads, "_probed", {})
    monkeypatch.setattr(threads, "_busy_cores", lambda: 1.5)
    monkeypatch.setattr(threads, "_probe_seconds", lambda t, *a: pytest.fail("probed a busy machine"))
    assert threads.probe_threads(cores=2) == 1


def test_cli_threads_flag_documented_applied_and_checked(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads N" in text and "MASKAD_THREADS" in text and "one image is scored with 1 thread" in text
    assert main(["--threads", "0", "data", "synth", "--help-not-an-option"]) == 2
    assert main(["--threads", "0", "bench-not-a-command"]) == 2
    capsys.readouterr()
    monkeypatch.setattr(threads.os, "environ", {})
    args = type("Args", (), {"threads": 0})()
    with pytest.raises(ValueError, match="--threads must be a whole number >= 1, got 0"):
        threads.apply_argument(args)
    args.threads = 4
    threads.apply_argument(args)
    assert threads.os.environ[threads.THREADS_ENV] == "4"
