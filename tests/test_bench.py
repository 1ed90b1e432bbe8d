"""The benchmark: its per-view reference equals the batched model, its FLOP count equals a hand
count, its writer produces the table, and a --quick run completes. No speed is asserted here."""

import json

import pytest
import torch

from bench.__main__ import main
from bench.perf.configs import BenchConfig, default_configs, profile_model, quick_configs
from bench.perf.core import thread_sweep
from bench.perf.experiments import predict_views_chunked, reconstruct_patch_space
from bench.perf.flops import count_flops
from bench.perf.machine import PeakMemory, machine_info
from bench.perf.reference import PerViewLoopReference
from bench.perf.report import METRIC_ROWS, markdown
from maskad_core.masking import complementary_masks
from maskad_core.model import MaskedAutoencoder

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
            decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared machine: a second thread mostly waits for a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(**overrides) -> MaskedAutoencoder:
    torch.manual_seed(0)
    return MaskedAutoencoder(**{**TINY, **overrides}).eval()


@pytest.fixture
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.8, 0.9])  # n = 2, 4, 5, 10 views of 16 patches
def test_reference_equals_batched_model(images, ratio):
    model = tiny_model()
    masks = complementary_masks(model.num_patches, ratio, torch.Generator().manual_seed(2))
    with torch.no_grad():
        batched = model.reconstruct(images, masks)
        looped = PerViewLoopReference(model).reconstruct(images, masks)
        views_b = model.predict_views(images, masks)
        views_l = PerViewLoopReference(model).predict_views(images, masks)
    assert views_l.shape == (3, len(masks), 3, 32, 32)
    torch.testing.assert_close(views_l, views_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(looped, batched, rtol=1e-5, atol=1e-5)


def test_reference_equals_batched_model_with_per_image_masks(images):
    model = tiny_model()
    gen = torch.Generator().manual_seed(3)
    masks = torch.stack([complementary_masks(model.num_patches, 0.8, gen) for _ in range(3)])
    with torch.no_grad():
        torch.testing.assert_close(PerViewLoopReference(model).predict_views(images, masks),
                                   model.predict_views(images, masks), rtol=1e-5, atol=1e-5)


def test_reference_gradients_equal_batched_model(images):
    model = tiny_model().train()
    masks = complementary_masks(model.num_patches, 0.75, torch.Generator().manual_seed(4))
    grads = []
    for net in (model, PerViewLoopReference(model)):
        model.zero_grad()
        net.reconstruct(images, masks).square().mean().backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def hand_count_forward(n: int, batch: int = 1) -> dict[str, int]:
    """Matmul FLOPs (2 per multiply-add) of the tiny model's forward, derived by hand.

    16 patches of 8x8x3 = 192 values; n views of 16/n visible tokens each (n divides 16 here).
    A block on t tokens of width d: qkv 2*t*d*3d, proj 2*t*d*d, MLP 2 * 2*t*d*4d -> 24*t*d^2
    (linear layers), attention QK^T and AV: 2 * 2*t*t*d per sequence.
    """
    length, patch_values, d, dd = 16, 192, 32, 16
    k = length // n
    conv = 2 * length * patch_values * d  # patch embedding, once per image
    linear = (2 * n * 24 * k * d * d                      # encoder: 2 blocks, n sequences of k tokens
              + 2 * n * k * d * dd                        # decoder_embed on the visible tokens
              + n * 24 * length * dd * dd                 # decoder: 1 block, n sequences of 16 tokens
              + 2 * n * length * dd * patch_values)       # prediction head
    attention = 2 * n * 4 * k * k * d + n * 4 * length * length * dd
    return {"convolution": batch * conv, "addmm": batch * linear, "attention": batch * attention}


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_flop_count_equals_hand_count(ratio):
    model = tiny_model()
    n = round(1 / (1 - ratio))
    masks = complementary_masks(model.num_patches, ratio, torch.Generator().manual_seed(5))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        total, by_op = count_flops(lambda: model.predict_views(x, masks))
    expected = hand_count_forward(n, batch=2)
    assert by_op["convolution"] == expected["convolution"]
    assert by_op["addmm"] == expected["addmm"]
    # the CPU attention kernel is not in torch's flop table; bench.perf.flops adds it
    assert by_op["_scaled_dot_product_flash_attention_for_cpu"] == expected["attention"]
    assert total == sum(expected.values())


def test_backward_flops_are_twice_forward_except_the_input_gradient():
    model = tiny_model().train()
    masks = complementary_masks(model.num_patches, 0.75, torch.Generator().manual_seed(6))
    x = torch.rand(1, 3, 32, 32)
    total, _ = count_flops(lambda: model.predict_views(x, masks).sum().backward())
    fwd = hand_count_forward(4)
    # linear layers: input and weight gradients (2x forward); the images need no gradient, so the
    # patch embedding's backward is its weight gradient only (1x); the attention backward recomputes
    # QK^T and then takes four products (2.5x forward, torch's formula)
    expected = 3 * fwd["addmm"] + 2 * fwd["convolution"] + (1 + 2.5) * fwd["attention"]
    assert total == expected


def test_matmul_flops_are_two_n_cubed():
    a, b = torch.rand(64, 48), torch.rand(48, 40)
    assert count_flops(lambda: torch.mm(a, b))[0] == 2 * 64 * 48 * 40


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(16 * 2**20)  # 64 MiB, touched
        del block
    assert memory.mib >= 60, memory.method
    with PeakMemory(torch.device("cpu")) as idle:
        pass
    assert idle.mib < 30


def fake_result(outputs_equal=True) -> dict:
    config = {
        "name": "alpha", "description": "32 px", "note": "", "paper": True, "model": {},
        "n_views": 4, "parameters": 1_230_000, "train_batch": 2, "infer_batch": 4, "repeats": 1,
        "train_images_per_s": 10.0, "train_lpips_images_per_s": 8.0, "infer_images_per_s": 40.0,
        "infer_ms_batch1": 30.0, "infer_ms_lower_bound": 12.5, "infer_peak_mib": 5.0,
        "train_peak_mib": 20.0, "train_lpips_peak_mib": 25.0, "memory_method": "VmHWM",
        "lpips_weights": "random AlexNet", "flops_per_image": {"infer": 2e9, "train": 6e9,
                                                               "train_lpips": 7e9},
        "infer_fraction_of_peak": 0.55, "infer_batch1_fraction_of_peak": 0.4,
        "train_fraction_of_peak": 0.3, "train_lpips_fraction_of_peak": 0.28,
        "infer_fraction_of_peak_cpu": 0.6, "infer_batch1_fraction_of_peak_cpu": 0.45,
        "train_fraction_of_peak_cpu": 0.42, "train_lpips_fraction_of_peak_cpu": 0.3,
        "paper_schedule_hours": 100.8, "paper_schedule_hours_lpips": 126.0,
        "views_vs_loop": [{"batch": 1, "ratio": 2.0, "ratio_cpu": 1.5, "outputs_equal": outputs_equal,
                           "batched_ms": 1.0, "loop_ms": 2.0, "max_abs_diff": 0.0}],
    }
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "threads": 1, "device": "cpu", "gpu_used": False,
                    "torch": "x"},
        "contention": {"wall_s": 5, "load_avg_1min_start": 3.0, "load_avg_1min_end": 3.0,
                       "other_processes_cpu_share": 0.5},
        "matmul": {"size": 256, "dtype": "float32", "gflops": 80.0, "gflops_min": 70.0,
                   "gflops_max": 90.0, "samples": 9},
        "thread_sweep": [{"threads": 1, "matmul_gflops": 80.0, "score_ms_batch1": 3.0, "config": "alpha"},
                         {"threads": 2, "matmul_gflops": 60.0, "score_ms_batch1": 9.0, "config": "alpha"}],
        "autocast": "none (fp32)", "created": "now", "configs": [config, {**config, "name": "beta"}],
        "targets": [{"target": "training step >= 40% of matmul rate", "config": "alpha",
                     "value": 0.3, "value_cpu": 0.42, "met": False, "met_cpu": True}],
    }


def test_markdown_has_a_column_per_config_and_a_row_per_metric():
    text = markdown(fake_result())
    header = next(line for line in text.splitlines() if line.startswith("| metric"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["metric", "alpha", "beta"]
    for label, _ in METRIC_ROWS:
        assert f"| {label} |" in text
    assert "| training step >= 40% of matmul rate | alpha | 30% / 42% | missed / met |" in text
    assert "| training, % of matmul rate: wall / CPU time | 30% / 42% |" in text
    assert "Test CPU" in text and "80.0 GFLOP/s" in text and "shared" in text
    assert "| 4.2 (5.25 with LPIPS) | 4.2 (5.25 with LPIPS) |" in text  # 100.8 h, 126 h in days
    assert "| 2.00x / 1.50x at batch 1 |" in text
    assert "| 2 | 60.0 | 9 |" in text


def test_markdown_says_whether_a_gpu_was_used():
    assert markdown(fake_result()).startswith("**GPU used: no** (CPU only). Measured")
    result = fake_result()
    result["machine"].update(device="cuda:0", gpu_used=True, gpu="NVIDIA H200")
    assert markdown(result).startswith("**GPU used: yes** (NVIDIA H200). Measured")
    assert machine_info(torch.device("cpu"))["gpu_used"] is False


def test_markdown_flags_views_that_differ():
    assert "outputs DIFFER" in markdown(fake_result(outputs_equal=False))
    assert "outputs DIFFER" not in markdown(fake_result())


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_run_writes_json_and_markdown(tmp_path, capsys, restore_threads):
    args = ["--quick", "--repeats", "1", "--threads", "1", "--no-thread-sweep", "--profile",
            "--out", str(tmp_path)]
    assert main(args) == 0
    record = json.loads((tmp_path / "quick.json").read_text())
    (config,) = record["configs"]
    assert config["name"] == "tiny" and config["n_views"] == 4
    assert config["train_images_per_s"] > 0 and config["train_lpips_images_per_s"] > 0
    assert config["flops_per_image"]["train_lpips"] > config["flops_per_image"]["train"] > \
        2 * config["flops_per_image"]["infer"]
    assert all(row["outputs_equal"] for row in config["views_vs_loop"])
    assert record["machine"]["threads"] == 1 and record["matmul"]["gflops"] > 0
    table = (tmp_path / "quick.md").read_text()
    assert "| metric | tiny |" in table
    assert "`python -m bench --quick --no-thread-sweep --threads 1 --repeats 1`" in table
    assert table in capsys.readouterr().out
    profile = (tmp_path / "quick.profile.txt").read_text()
    assert "scoring, batch 2" in profile and "training step" in profile and "aten::addmm" in profile


def test_thread_sweep_covers_every_core_and_restores_the_thread_count(restore_threads):
    torch.set_num_threads(1)
    rows = thread_sweep(quick_configs()[0], torch.device("cpu"), matmul_size=64, repeats=1, log=print)
    assert [row["threads"] for row in rows] == list(range(1, machine_info(torch.device("cpu"))["cores"] + 1))
    assert all(row["matmul_gflops"] > 0 and row["score_ms_batch1"] > 0 for row in rows)
    assert torch.get_num_threads() == 1


def test_unknown_config_is_a_clear_error(tmp_path, capsys):
    assert main(["--quick", "--configs", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "quick.json").exists()


def test_bench_config_rejects_unknown_model_keys():
    with pytest.raises(ValueError, match="embed_dims"):
        BenchConfig("x", {"embed_dims": 8})


def test_profile_model_reads_profiles_yaml(tmp_path):
    path = tmp_path / "profiles.yaml"
    path.write_text("cpu:\n  parameters:\n    image_size: 64\n    embed_dim: 96\n    depth: 1\n"
                    "    mask_ratio: 0.8\n    epochs: 3\n")
    model, ratio, source = profile_model("cpu", {"img_size": 128, "patch_size": 16}, path)
    assert model == {"img_size": 64, "patch_size": 16, "embed_dim": 96, "depth": 1}
    assert ratio == 0.8 and "profiles.yaml" in source
    model, ratio, source = profile_model("cpu", {"img_size": 128}, tmp_path / "missing.yaml")
    assert model == {"img_size": 128} and ratio == 0.75 and source.startswith("built-in")


def test_default_configs_follow_the_repository_profiles():
    by_name = {c.name: c for c in default_configs()}
    assert by_name["paper-E2D4-224"].paper and by_name["paper-E2D4-224"].model["img_size"] == 224
    assert (by_name["paper-E2D4-224"].model["depth"], by_name["paper-E2D4-224"].model["decoder_depth"]) == (2, 4)
    assert all(MaskedAutoencoder(**c.model).num_patches >= 4 for c in by_name.values())


@pytest.mark.parametrize("ratio", [0.75, 0.8])  # n = 5: padded views, the attention mask is chunked too
def test_experiment_variants_equal_the_model(images, ratio):
    model = tiny_model()
    masks = complementary_masks(model.num_patches, ratio, torch.Generator().manual_seed(7))
    with torch.no_grad():
        views = model.predict_views(images, masks)
        # a chunk budget of one sequence's MLP activations: one sequence per chunk
        one_sequence = 16 * model.decoder_blocks[0].mlp.fc1.out_features * 4
        chunked = predict_views_chunked(model, images, masks, chunk_bytes=one_sequence)
        torch.testing.assert_close(chunked, views, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(reconstruct_patch_space(model, images, masks),
                                   model.reconstruct(images, masks), rtol=1e-5, atol=1e-5)


def test_training_benchmark_old_loss_is_the_old_formula_and_the_record_reads():
    from bench.perf import training
    from maskad_core.losses import ReconstructionLoss

    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32)
    recon = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    old, old_parts = training.OldLoss(lpips="off")(recon, target)
    new, _ = ReconstructionLoss(lpips="off")(recon, target)
    assert float(old_parts["ssim"]) > 0.01 and float(old) == pytest.approx(float(new), abs=1e-6)
    row = {"threads": 1, "images_per_s": 10.0, "images_per_s_each_round": [10.0],
           "cpu_seconds_per_image": 0.1, "matmul_gflops": 50.0, "matmul_fraction": 0.3}
    results = {"when": "now", "command": "python -m bench.perf.training",
               "machine": {"cpu": "X", "cores": 2, "torch": "t"}, "categories": ["a"],
               "train_images": 5, "decode_s": 1.0, "chosen_threads": 1,
               "load": {"wall_s": 1, "load_avg_1min_start": 0, "load_avg_1min_end": 0},
               "comparison": {"steps_per_call": 1, "images_per_call": 16, "rounds": 1,
                              "gflop_per_image": 1.5, "variants": {
                                  "old, 2 threads": {**row, "threads": 2, "images_per_s": 2.0},
                                  "new, 2 threads": {**row, "threads": 2, "images_per_s": 4.0},
                                  "old, 1 thread": {**row, "images_per_s": 8.0},
                                  "new, 1 thread": row}}}
    text = training.markdown(results)
    assert "| new, 1 thread | 1 | 10.0 | 10.0 | 100.0 | 50.0 | 30% | 5.00x | 1.25x |" in text
    assert "**5.0x** today's code" in text
