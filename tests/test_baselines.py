"""Training-free baselines: planted defects, the chunked nearest neighbour against brute force, one
training image, bad input, and ``maskad baseline`` on tiny data. No AUROC level is asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch
from train_fixtures import tiny_config

from maskad_core.cli.main import main
from maskad_core.data.mvtec import DataError
from maskad_core.evaluation.baselines import evaluate_baseline, load_split
from maskad_core.evaluation.detectors import (
    FLOOR_METHODS as METHODS,  # probes: tests/test_detectors.py
)
from maskad_core.evaluation.detectors import (
    STD_FLOOR,
    PixelGaussian,
    PixelNearestNeighbour,
    chunk_sizes,
    make_detector,
)
from maskad_core.evaluation.results import METRIC_NAMES, format_table, metrics_table
from maskad_core.training.splits import dataset_samples, open_dataset


def normal_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Aligned 'parts': one smooth pattern, a little brightness jitter and pixel noise."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    pattern = 0.4 + 0.2 * torch.sin(6 * x) * torch.cos(4 * y)
    base = torch.stack([pattern, 0.8 * pattern, 0.5 * pattern + 0.1])
    jitter = 0.02 * torch.randn(count, 1, 1, 1, generator=generator)
    noise = 0.02 * torch.randn(count, 3, size, size, generator=generator)
    return (base + jitter + noise).clamp(0, 1)


SQUARE = (slice(10, 16), slice(18, 24))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("smooth_sigma", [0.0, 2.0])
def test_a_planted_defect_holds_the_maximum_of_the_map(method, smooth_sigma):
    train = normal_images(12)
    test = normal_images(2, seed=1)
    test[0, :, SQUARE[0], SQUARE[1]] = 1.0  # a bright square on a normal image
    maps = make_detector(method).fit(train).anomaly_map(test, smooth_sigma)
    assert maps.shape == (2, 32, 32)
    row, column = divmod(int(maps[0].argmax()), 32)
    assert SQUARE[0].start <= row < SQUARE[0].stop and SQUARE[1].start <= column < SQUARE[1].stop
    assert maps[0].max() > maps[1].max()  # the defective image outscores the normal one


def brute_force_nearest(test: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    return ((test[:, None] - train[None]) ** 2).mean(dim=2).amin(dim=1)


@pytest.mark.parametrize("pairs", [0, 1, 3, 8, 34, 10_000])
def test_chunked_nearest_neighbour_equals_brute_force(pairs):
    generator = torch.Generator().manual_seed(0)
    train = torch.rand(7, 3, 9, 11, generator=generator)
    test = torch.rand(5, 3, 9, 11, generator=generator)
    bytes_per_pair = 3 * 9 * 11 * 4
    max_chunk_bytes = max(1, pairs * bytes_per_pair)  # 0 pairs: a bound below one pair still runs
    detector = PixelNearestNeighbour(max_chunk_bytes=max_chunk_bytes).fit(train)
    torch.testing.assert_close(detector.anomaly_map(test), brute_force_nearest(test, train))


def test_chunks_stay_within_the_memory_bound():
    for n_test in (1, 5, 160):
        for n_train in (1, 7, 320):
            for pairs in (1, 2, 3, 50, 1000, 10**6):
                test, train = chunk_sizes(n_test, n_train, 100, 100 * pairs)
                assert 1 <= test <= n_test and 1 <= train <= n_train
                assert test * train <= pairs
                # no smaller chunk than needed: the training side is filled first
                assert train == min(n_train, pairs)


def test_one_training_image_uses_the_std_floor():
    train = normal_images(1)
    test = normal_images(3, seed=1)
    gaussian = PixelGaussian().fit(train)
    assert torch.all(gaussian.std == STD_FLOOR)
    maps = gaussian.anomaly_map(test)
    assert torch.isfinite(maps).all()
    torch.testing.assert_close(maps, ((test - train) / STD_FLOOR).square().mean(dim=1))
    nearest = PixelNearestNeighbour().fit(train).anomaly_map(test)
    torch.testing.assert_close(nearest, (test - train).square().mean(dim=1))


def test_bad_input_gives_one_line_errors():
    def message(error_type, call, *args, **kwargs) -> str:
        with pytest.raises(error_type) as info:
            call(*args, **kwargs)
        text = str(info.value)
        assert "\n" not in text
        return text

    empty = torch.zeros(0, 3, 8, 8)
    for method in METHODS:
        assert "no images" in message(ValueError, make_detector(method).fit, empty)
        detector = make_detector(method)
        assert "fit the detector" in message(ValueError, detector.anomaly_map, normal_images(1))
        detector.fit(normal_images(2, size=32))
        text = message(ValueError, detector.anomaly_map, normal_images(1, size=16))
        assert "(3, 16, 16)" in text and "(3, 32, 32)" in text and "image_size" in text
        assert "(B, C, H, W)" in message(ValueError, detector.anomaly_map, torch.rand(3, 32, 32))
    assert "gaussian, nn" in message(ValueError, make_detector, "knn")
    assert "std_floor" in message(ValueError, PixelGaussian, 0.0)
    assert "max_chunk_bytes" in message(ValueError, PixelNearestNeighbour, 0)


def test_a_category_without_training_images_is_named(data_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_root, root)
    for image in (root / "stripes" / "train" / "good").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=r"category 'stripes' is empty: no images in .*train/good"):
        evaluate_baseline("gaussian", root, ["stripes"], image_size=32)


def test_training_images_are_the_ones_the_mae_trains_on(data_root):
    config = tiny_config(data_root, categories=["stripes"], max_train_images_per_category=3)
    expected = [s.path for s in dataset_samples(open_dataset(config, "train")[0])]
    images, _, samples = load_split(data_root, "stripes", "train", 32, limit=3)
    assert [s.path for s in samples] == expected and images.shape == (3, 3, 32, 32)
    assert 0.0 <= images.min() and images.max() <= 1.0


@pytest.mark.parametrize("method", METHODS)
def test_evaluate_baseline_has_evaluate_models_shape(method, data_root):
    evaluation, scores = evaluate_baseline(method, data_root, image_size=32,
                                           max_train_images_per_category=5)
    assert set(evaluation) == {"per_category", "mean", "image_auroc", "evaluation", "test_counts"}
    assert list(evaluation["per_category"]) == ["stripes", "waves"]
    for row in evaluation["per_category"].values():
        # every metric of evaluate_model; eq. 1 needs a reconstruction: NaN, and the note says why
        assert set(METRIC_NAMES) <= set(row) and row["n_train"] == 5
        assert math.isnan(row["image_auroc_eq1"]) and "no reconstruction" in row["image_note"]
        assert row["fit_s"] >= 0 and row["score_s"] >= 0
    assert math.isnan(evaluation["per_category"]["waves"]["pixel_auroc"])  # no masks
    assert not math.isnan(evaluation["per_category"]["stripes"]["pixel_auroc"])
    assert evaluation["evaluation"]["headline"] == "image_auroc_max"
    assert evaluation["evaluation"]["smooth_sigma"] == 2.0
    assert list(scores.columns) == ["path", "category", "defect_type", "label",
                                    "score_mean", "score_max", "score_topk", "score_eq1"]
    assert scores.score_eq1.isna().all()
    assert len(scores) == evaluation["mean"]["n_test"] == 12
    assert "mean" in format_table(metrics_table(evaluation))


@pytest.mark.parametrize("method", METHODS)
def test_maskad_baseline_prints_the_evaluate_table(method, data_root, home, tmp_path, capsys):
    out = tmp_path / "out" / "floor.json"
    assert main(["baseline", "--data", str(data_root), "--method", method, "image_size=32",
                 "max_train_images_per_category=4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert "image_auroc_max" in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == ["stripes", "waves", "mean"]
    assert f"{method} (training-free), 32 px" in printed
    saved = json.loads(out.read_text())
    assert saved["evaluation"]["method"] == method
    assert saved["per_category"]["stripes"]["n_train"] == 4


def test_maskad_baseline_without_data_uses_the_embedded_synthetic_set(data_root, home, monkeypatch,
                                                                       capsys):
    import maskad_core.data.synthetic

    monkeypatch.setattr(maskad_core.data.synthetic, "default_data_root", lambda *a, **k: data_root)
    assert main(["baseline", "image_size=32", "--categories", "waves"]) == 0
    assert "\nwaves " in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--categories", "bottel"], "unknown category 'bottel'"),
    (["--method", "knn"], "invalid choice: 'knn'"),
    (["max_train_images_per_category=0"], "max_train_images_per_category must be a positive"),
    (["smooth_sigma=-1"], "smooth_sigma must be a finite number >= 0"),
    (["image_size=0"], "image_size must be a positive integer"),
    (["smooth=2"], "unknown setting 'smooth' for maskad baseline --method gaussian"),
    (["--method", "nn", "std_floor=0.1"], "unknown setting 'std_floor' for maskad baseline --method nn"),
    (["image_size=abc"], "bad value 'abc' for image_size"),
])
def test_maskad_baseline_bad_arguments_give_one_line(argv, message, data_root, home, capsys):
    assert main(["baseline", "--data", str(data_root), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("maskad: error: ") and message in err


def test_bench_floor_writes_its_tables(data_root, home, tmp_path):
    from bench.records.floor import main as floor_main

    out = tmp_path / "results"
    assert floor_main(["--mvtec", str(data_root), "--mvtec-categories", "stripes",
                       "--mvtec-sizes", "32", "--generated", str(data_root), "--generated-size",
                       "32", "--generated-train", "4", "--out", str(out)]) == 0
    report = json.loads((out / "floor.json").read_text())
    assert [(r["data"], r["method"]) for r in report["results"]] == [
        (data, method) for data in ("MVTec AD", "generated") for method in METHODS]
    text = (out / "floor.md").read_text()
    assert "python -m bench.records.floor --mvtec" in text and "| MVTec AD | nn | 32 | 8 | stripes |" in text
    assert "| generated | gaussian | 32 | 4 | mean of 2 |" in text and "load average" in text
