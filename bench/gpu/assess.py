"""The trained model on the packed test split, scored as the study scores it, and the
training-free detectors beside it.

As ``maskad_core.evaluation.evaluate``: each image gets its own masks from a generator seeded by
(eval_seed, stream, its index), so scores do not depend on the batch; the composite (eq. 3) in bf16
autocast on CUDA, clamped to [0, 1] in float32; the paper's eq. 1 (mean squared error) and the
study's default score (the max of the l2_centered map smoothed with sigma = side / 32, standardised
per pixel by the maps of the normal training images, stream "fit"); image AUROC per category with
a 95% stratified bootstrap interval over test images; pixel AUROC of the default map where masks
exist. AUPRO is not computed here.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.gpu import fallbacks
from bench.gpu.settings import DEFAULT_SCORE, DETECTOR_SMOOTH_SIGMA, RECIPE
from maskad_core import scoring
from maskad_core.masking import make_masks


def metric_functions() -> tuple[dict, str]:
    """maskad_core.metrics where scipy and scikit-learn import, else the numpy fallbacks."""
    try:
        from maskad_core import metrics
    except ImportError as error:
        return ({"image_auroc": fallbacks.image_auroc, "auroc_interval": fallbacks.auroc_interval,
                 "pixel_auroc": fallbacks.pixel_auroc},
                f"numpy fallback (bench.gpu.fallbacks: {error.name or error} missing), "
                "checked equal to maskad_core.metrics in tests")
    import warnings

    def quiet(function):
        def call(*args, **kwargs):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", metrics.UndefinedMetricWarning)
                return function(*args, **kwargs)
        return call

    return ({"image_auroc": quiet(metrics.image_auroc), "auroc_interval": quiet(metrics.auroc_interval),
             "pixel_auroc": quiet(metrics.pixel_auroc)}, "maskad_core.metrics")


def image_masks(masking: str, ratio: float, num_patches: int, indices, stream: str) -> torch.Tensor:
    """(B, n, L): evaluation.evaluate.image_masks with one partition."""
    generator = torch.Generator()
    out = []
    for index in indices:
        generator.manual_seed(fallbacks.derive_seed(RECIPE["eval_seed"], stream, int(index)))
        out.append(make_masks(masking, num_patches, ratio, generator))
    return torch.stack(out)


@torch.no_grad()
def maps_and_eq1(model, images_u8: torch.Tensor, masking: str, ratio: float, stream: str,
                 smooth_sigma: float, device: torch.device, batch: int = 64):
    """(default maps (N, H, W) on the CPU, not yet standardised; eq. 1 scores (N,))."""
    model.eval()
    maps, eq1 = [], []
    for start in range(0, images_u8.shape[0], batch):
        images = images_u8[start:start + batch].to(device).float().div_(255.0)
        masks = image_masks(masking, ratio, model.num_patches,
                            range(start, start + images.shape[0]), stream).to(device)
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                recon = model.reconstruct(images, masks)
        else:
            recon = model.reconstruct(images, masks)
        recon = recon.float().clamp(0.0, 1.0)
        maps.append(scoring.anomaly_map(images, recon, kind=DEFAULT_SCORE["anomaly_map"],
                                        smooth_sigma=smooth_sigma).cpu())
        eq1.append(scoring.eq1_score(images, recon).cpu())
    model.train()
    return torch.cat(maps), torch.cat(eq1).numpy()


def _row(functions, labels, scores, resamples: int) -> dict:
    value = functions["image_auroc"](labels, scores)
    low, high = functions["auroc_interval"](labels, scores, resamples=resamples)
    return {"auroc": float(value), "ci": [float(low), float(high)]}


def evaluate_arm(model, train, test, masking: str, ratio: float, device, functions,
                 resamples: int) -> dict:
    """Per category: the default score and eq. 1 (AUROC and interval), pixel AUROC; seconds."""
    started = time.perf_counter()
    sigma = model.img_size * DEFAULT_SCORE["smoothing_fraction_of_side"]
    fit_maps, _ = maps_and_eq1(model, train.images, masking, ratio, "fit", sigma, device)
    statistics = scoring.MapStatistics.fit(fit_maps, train.categories)
    maps, eq1 = maps_and_eq1(model, test.images, masking, ratio, "eval", sigma, device)
    maps = statistics.standardize(maps, test.categories)
    default = scoring.image_score(maps, DEFAULT_SCORE["score_reduction"]).numpy()
    inference_s = time.perf_counter() - started
    per_category = {}
    for category in dict.fromkeys(test.categories):
        chosen = np.array([c == category for c in test.categories])
        labels = test.labels[chosen]
        row = {"n_good": int((labels == 0).sum()), "n_defective": int((labels == 1).sum()),
               "default": _row(functions, labels, default[chosen], resamples),
               "eq1": _row(functions, labels, eq1[chosen], resamples), "pixel_auroc": None}
        pixels = torch.from_numpy(chosen & test.has_mask)
        if bool(test.has_mask[chosen].any()):
            row["pixel_auroc"] = float(functions["pixel_auroc"](test.masks[pixels].numpy(),
                                                                maps[pixels].numpy()))
        per_category[category] = row
    return {"per_category": per_category, "smooth_sigma": sigma,
            "images_scored": int(train.images.shape[0] + test.images.shape[0]),
            "inference_s": inference_s, "seconds": time.perf_counter() - started}


def evaluate_detectors(train, test, device, functions, resamples: int, deadline: float) -> dict:
    """Every training-free detector of maskad_core.evaluation.detectors, fitted per category on
    the packed training images and scored on the test images at the same size (the max of the map
    smoothed with sigma 2); each guarded: an error or the deadline is recorded, not raised."""
    from maskad_core.evaluation.detectors import FLOOR_METHODS, PROBE_METHODS, make_detector

    out = {}
    # patch_nn last: the slowest, so that the deadline cuts it rather than the quick ones
    methods = sorted((*FLOOR_METHODS, *PROBE_METHODS), key=lambda m: m == "patch_nn")
    for method in methods:
        if time.monotonic() > deadline:
            out[method] = {"skipped": "the time budget ran out before it"}
            continue
        started = time.perf_counter()
        try:
            out[method] = {"per_category": _detector_rows(make_detector, method, train, test, device,
                                                          functions, resamples)}
        except Exception as error:  # one detector's failure must not lose the model's record
            out[method] = {"error": f"{type(error).__name__}: {error}"}
        out[method]["seconds"] = time.perf_counter() - started
    return out


def _detector_rows(make_detector, method, train, test, device, functions, resamples) -> dict:
    rows = {}
    for category in dict.fromkeys(test.categories):
        fit_index = [i for i, c in enumerate(train.categories) if c == category]
        test_index = [i for i, c in enumerate(test.categories) if c == category]
        detector = make_detector(method).fit(train.images[fit_index].to(device).float() / 255)
        maps = torch.cat([detector.anomaly_map(test.images[test_index[s:s + 32]].to(device).float() / 255,
                                               DETECTOR_SMOOTH_SIGMA).cpu()
                          for s in range(0, len(test_index), 32)])
        labels = test.labels[test_index]
        row = _row(functions, labels, scoring.image_score(maps.float(), "max").numpy(), resamples)
        has = test.has_mask[test_index]
        if has.any() and not detector.constant_map:
            row["pixel_auroc"] = float(functions["pixel_auroc"](test.masks[test_index][has].numpy(),
                                                                maps[has].numpy()))
        rows[category] = row
    return rows
