"""Beyond the paper: a score from the same trained model that is not its reconstruction error.

Each patch of an image is encoded by the trained encoder in the complementary view that shows it
(``MaskedAutoencoder.encode_patches``; the model's own mask ratio, complementary masks even for a
model trained with random ones, so that every patch is encoded once). A test patch's anomaly is the
squared distance of its token to the nearest token of the category's normal training images, at any
position (a memory bank, as PatchCore keeps one, here of the MAE's own tokens; no pretrained
weights). The patch scores are spread over the patch's pixels, smoothed like the default map, and
scored through ``results.score_split`` as every other detector is. The paper scores by
reconstruction only: this is the study's addition, reported beside the paper's score, never as it.
"""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from maskad_core import scoring
from maskad_core.evaluation.results import score_split
from maskad_core.masking import make_masks
from maskad_core.training.config import TrainConfig
from maskad_core.training.runtime import derive_seed
from maskad_core.training.splits import dataset_samples, open_dataset

DEFAULT_MAX_BANK = 50_000  # tokens kept per category (a seeded random subset beyond that)
CHUNK_TOKENS = 2048  # test tokens per distance chunk: CHUNK_TOKENS x bank x 4 bytes at most


@torch.no_grad()
def split_features(model, config: TrainConfig, split: str, stream: str):
    """(tokens (N, L, D), categories, the split's dataset) of a split, unaugmented, each image with
    its own seeded complementary partition."""
    dataset, _ = open_dataset(config, split)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False)
    generator, tokens, categories, offset = torch.Generator(), [], [], 0
    for batch in loader:
        masks = []
        for index in range(offset, offset + batch["image"].shape[0]):
            generator.manual_seed(derive_seed(config.eval_seed, "features", stream, index))
            masks.append(make_masks("complementary", model.num_patches, config.mask_ratio, generator))
        tokens.append(model.encode_patches(batch["image"], torch.stack(masks)).float())
        categories.extend(batch["category"])
        offset += batch["image"].shape[0]
    return torch.cat(tokens), categories, dataset


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """(Q,) squared Euclidean distance of each query token to its nearest bank token, in chunks."""
    bank_norms = bank.square().sum(1)
    out = []
    for chunk in queries.split(CHUNK_TOKENS):
        distances = chunk.square().sum(1, keepdim=True) - 2 * chunk @ bank.T + bank_norms
        out.append(distances.amin(dim=1).clamp_min_(0))
    return torch.cat(out)


def _bank(tokens: torch.Tensor, max_bank: int, seed: int) -> torch.Tensor:
    flat = tokens.reshape(-1, tokens.shape[-1])
    if flat.shape[0] <= max_bank:
        return flat
    keep = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(seed))[:max_bank]
    return flat[keep]


def evaluate_feature_nn(run, *, max_bank: int = DEFAULT_MAX_BANK, quiet: bool = True,
                        epoch: int | None = None, test_root: str | None = None):
    """(evaluation dict in the shape of ``evaluate.evaluate_model``'s, scores frame) of a finished
    run's encoder-token nearest-neighbour score on its own test split (CPU); ``epoch`` scores the
    weights kept after that epoch, ``test_root`` the test split of another data root (the memory
    bank stays the run's own training images)."""
    config = run.config
    model = run.load_model("cpu", epoch=epoch)
    started = time.perf_counter()
    train_tokens, train_categories, _ = split_features(model, config, "train", "fit")
    test_config = config if test_root is None else TrainConfig(**{**config.to_dict(), "data_root": str(test_root)})
    test_tokens, test_categories, test_set = split_features(model, test_config, "test", "eval")
    grid = config.image_size // config.patch_size
    patch_scores = torch.empty(test_tokens.shape[:2])
    for category in dict.fromkeys(test_categories):
        bank = _bank(train_tokens[torch.tensor([c == category for c in train_categories])],
                     max_bank, config.eval_seed)
        rows = torch.tensor([c == category for c in test_categories])
        queries = test_tokens[rows].reshape(-1, test_tokens.shape[-1])
        patch_scores[rows] = nearest_distances(queries, bank).reshape(-1, test_tokens.shape[1])
    pixels = patch_scores.reshape(-1, grid, grid).repeat_interleave(config.patch_size, 1) \
        .repeat_interleave(config.patch_size, 2)
    maps = scoring.gaussian_smooth(pixels, config.smooth_sigma)
    masks = torch.stack([test_set[i]["mask"][0] for i in range(len(test_set))]).bool()
    scored = score_split(dataset_samples(test_set), maps, masks, headline=config.score_reduction,
                         topk_fraction=config.topk_fraction)
    seconds = time.perf_counter() - started
    evaluation = {"per_category": scored.per_category, "mean": scored.mean,
                  "image_auroc": scored.mean[f"image_auroc_{config.score_reduction}"],
                  "evaluation": {"score": "encoder-token nearest neighbour (beyond the paper)",
                                 "run": run.id, "max_bank": max_bank, "wall_time_s": seconds,
                                 "smooth_sigma": config.smooth_sigma}}
    return evaluation, scored.frame
