"""What the GPU run trains and scores, as plain constants (the run may not import yaml).

``tests/test_gpu_script.py`` keeps PAPER equal to the ``paper`` profile of
``maskad_core/study/profiles.yaml`` and the recipe values equal to ``TrainConfig``'s defaults, so
these cannot drift from the study's.
"""

from __future__ import annotations

# The paper profile's model and schedule (profiles.yaml, `paper`).
PAPER = {
    "image_size": 224, "patch_size": 16, "embed_dim": 768, "depth": 2, "num_heads": 12,
    "decoder_embed_dim": 512, "decoder_depth": 4, "decoder_num_heads": 16, "mask_ratio": 0.75,
    "epochs": 1000, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 10.0,
}
# The recipe where the paper is silent (TrainConfig defaults): optimiser, loss weights, input norm,
# augmentation strengths (MVTecAD's defaults), masking.
RECIPE = {
    "masking": "complementary", "mlp_ratio": 4.0, "adam_beta1": 0.9, "adam_beta2": 0.95,
    "weight_decay": 0.05, "ssim_weight": 0.1, "l1_weight": 1.0, "lpips_weight": 0.1,
    "input_norm": "imagenet", "augment": ["crop", "rotate", "flip"], "crop_scale": (0.85, 1.0),
    "rotate_degrees": 10.0, "flip_probability": 0.5, "eval_seed": 0, "seed": 0,
}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The study's default score (TrainConfig defaults), with its smoothing at a thirty-second of the side.
DEFAULT_SCORE = {"anomaly_map": "l2_centered", "map_standardization": "per_pixel",
                 "score_reduction": "max", "smoothing_fraction_of_side": 1 / 32}
DETECTOR_SMOOTH_SIGMA = 2.0  # evaluation.detectors.DEFAULT_SMOOTH_SIGMA, as the floor record uses
# --dry-run: tiny widths and a few steps, so the CPU test runs the same code in seconds.
DRY = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_embed_dim": 32,
       "decoder_depth": 4, "decoder_num_heads": 2}
PACK_FORMAT = 1
PACK_MAX_MIB = 40
MVTEC_ROWS = ("bottle", "screw", "transistor")  # the packed MVTec AD categories, beside the paper's
