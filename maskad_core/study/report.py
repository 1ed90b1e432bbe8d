"""What the study's notebooks state, computed here so that the notebooks keep to narrative and plots.

Every number a notebook shows carries its data, size, budget and hardware: the ``*_description``
functions and :func:`provenance` write those lines. The rest are the notebooks' computations that are
more than a call: the closed form of notebook 01 and its simulation, the defect statistics on trained
models (01), the Table 1 frames and the sentences saying how they compare with the paper (04), the
Table 2 grid (05) and the histogram statistics of Figure 3 (06).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskad_core.data.mvtec import available_categories
from maskad_core.data.synthetic import MARKER_NAME
from maskad_core.evaluation.evaluate import image_masks, reconstruct_and_map
from maskad_core.masking import random_masks
from maskad_core.model import build_model
from maskad_core.study import paper
from maskad_core.training.config import TrainConfig
from maskad_core.training.runtime import cpu_name
from maskad_core.training.splits import data_root_of


def setup_notebook():
    """Quiet a notebook and return pyplot: runs print no progress bars and the LPIPS warning is
    reported by the training notebook instead; figures.STYLE sizes figures for the book's column."""
    import warnings

    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", message="IProgress not found")
    warnings.filterwarnings("ignore", message="LPIPS disabled")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    from maskad_core.study.figures import STYLE

    plt.rcParams.update(STYLE)
    return plt


# --------------------------------------------------------------------------- provenance
def is_synthetic(config: TrainConfig) -> bool:
    """True when the config's images are generated (the embedded set, or a root the generator wrote)."""
    return config.data_root is None or (Path(config.data_root) / MARKER_NAME).is_file()


def mvtec_categories(config: TrainConfig) -> list[str]:
    """The config's categories that are real MVTec AD ones: not generated, and named as one of its
    15 (a synthetic category may share a name with an MVTec AD one while its images differ)."""
    if is_synthetic(config):
        return []
    names = config.categories or available_categories(config.data_root)
    return [name for name in names if name in paper.MVTEC_CATEGORIES]


def is_mvtec(config: TrainConfig) -> bool:
    """True when every category is a real MVTec AD one."""
    names = config.categories or available_categories(data_root_of(config))
    return bool(names) and mvtec_categories(config) == list(names)


def has_mvtec(config: TrainConfig) -> bool:
    """True when some categories are real MVTec AD ones: their rows may stand beside the paper's."""
    return bool(mvtec_categories(config))


def data_description(config: TrainConfig) -> str:
    """The data set in one phrase, saying plainly whether it is synthetic, MVTec AD or other data;
    named, never by the folder it was read from (that is the building machine's, not the reader's)."""
    root = data_root_of(config)
    names = config.categories or available_categories(root)
    mvtec = mvtec_categories(config)
    others = [name for name in names if name not in mvtec]
    if config.data_root is None:
        kind = "the embedded synthetic set (generated images, not MVTec AD)"
    elif is_synthetic(config):
        kind = "a synthetic set (generated images, not MVTec AD)"
    elif mvtec and not others:
        kind = f"MVTec AD ({len(names)} of its 15 categories, official test split)"
    elif mvtec:
        kind = (f"real images: MVTec AD {', '.join(mvtec)} (official test split) and "
                f"{', '.join(others)} (not MVTec AD: outside the paper's Table 1)")
    else:
        kind = "a data set in MVTec AD's layout (not MVTec AD)"
    return f"{kind}; {len(names)} categories: {', '.join(names)}"


def data_label(config: TrainConfig) -> str:
    """A short label for figure titles: "synthetic, not MVTec AD", "MVTec AD", "MVTec AD and other
    real data" or "user data"."""
    if is_synthetic(config):
        return "synthetic, not MVTec AD"
    if is_mvtec(config):
        return "MVTec AD"
    return "MVTec AD and other real data" if has_mvtec(config) else "user data, not MVTec AD"


def lpips_words(active: bool, reason: str) -> str:
    """Whether the loss had its LPIPS term, in words for a reader (the loader's raw error names
    cache folders and environment variables of the machine that trained)."""
    if active:
        return "LPIPS on, as in eq. 4"
    if "lpips='off'" in reason or "switched off" in reason:
        return "LPIPS off by the setting lpips='off'; departs from eq. 4"
    return "LPIPS off: its AlexNet weights were not available; departs from eq. 4"


def model_description(config: TrainConfig) -> str:
    """ExDy, widths, heads and patch size: what the paper's Table 2 varies and leaves open."""
    return (f"E{config.depth}D{config.decoder_depth}, encoder {config.embed_dim} wide "
            f"({config.num_heads} heads), decoder {config.decoder_embed_dim} wide "
            f"({config.decoder_num_heads} heads), {config.patch_size} px patches")


def budget_description(config: TrainConfig, *, masking: bool = True) -> str:
    """Epochs, batch, learning rate, images and size: how far a run is from the paper's budget."""
    limit = config.max_train_images_per_category
    images = "all training images" if limit is None else f"at most {limit} training images per category"
    text = (f"{config.epochs} epochs, batch {config.batch_size}, AdamW lr {config.lr:g}, "
            f"{images}, {config.image_size} px")
    return text + (f", {config.masking} masking r = {config.mask_ratio:g}" if masking else "")


def hardware_description(device: str | None = None) -> str:
    """Device, processor name and thread count of this process (the one that trains and scores)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def provenance(config: TrainConfig, *, profile: str | None = None, device: str | None = None) -> str:
    """One line: data (synthetic or MVTec AD), image size, budget, model, hardware, seed."""
    parts = [
        f"data: {data_description(config)}",
        f"model: {model_description(config)}",
        f"budget: {budget_description(config)}",
        f"hardware: {hardware_description(device)}",
        f"seed {config.seed}",
    ]
    if profile:
        parts.append(f"profile {profile!r}")
    return "; ".join(parts)


def ablation_provenance(cells: Mapping[tuple[str, float], TrainConfig], *, profile: str) -> str:
    """The provenance of a Table 2 grid: its cells, and the data, widths and budget they share."""
    first = next(iter(cells.values()))
    depths = list(dict.fromkeys(name for name, _ in cells))
    ratios = list(dict.fromkeys(ratio for _, ratio in cells))
    return "; ".join([
        f"Table 2 grid {', '.join(depths)} x r in {ratios}, {first.masking} masking, "
        "one cached run per cell",
        f"data: {data_description(first)}",
        f"widths: encoder {first.embed_dim} ({first.num_heads} heads), decoder "
        f"{first.decoder_embed_dim} ({first.decoder_num_heads} heads), {first.patch_size} px patches",
        f"budget per cell: {budget_description(first, masking=False)}",
        f"hardware: {hardware_description()}",
        f"seed {first.seed}",
        f"profile {profile!r}",
    ])


def derivation_provenance(config: TrainConfig, image_size: int, patch_size: int, image_caption: str,
                          *, profile: str) -> str:
    """Notebook 02's line: the geometry of the masking identities, the image, the trained model."""
    patches = (image_size // patch_size) ** 2
    return (f"masking identities: {image_size} px, {patch_size} px patches (L = {patches}), "
            f"seed {config.seed}; image: {image_caption}; trained model: "
            + provenance(config, profile=profile))


def budget_vs_paper(config: TrainConfig) -> str:
    """This run's budget beside the paper's, saying whether it is the paper's or a reduced one."""
    setting = paper.setting()
    papers = (setting["image_size"], setting["epochs"], setting["batch_size"], setting["lr"])
    ours = (config.image_size, config.epochs, config.batch_size, config.lr)
    verdict = ("This is the paper's budget." if ours == papers else
               "This is a reduced budget, not the paper's setting: its numbers are not the paper's.")
    return (f"This run: {budget_description(config)}, on {data_label(config)}. "
            f"The paper: {setting['epochs']} epochs, batch {setting['batch_size']}, "
            f"{setting['image_size']} px, all {setting['categories']} MVTec AD categories, "
            f"{setting['gpus']}. {verdict}")


def loss_weights(config: TrainConfig) -> dict[str, float]:
    """λ1, λ2, λ3 of eq. 4 as this run used them (the paper gives none)."""
    return {"ssim": config.ssim_weight, "l1": config.l1_weight, "lpips": config.lpips_weight}


def training_stages(run) -> dict[str, torch.nn.Module]:
    """The models to show over a run's training: "initial" (the run's seed, no training), then
    "epoch N" for each snapshot the run kept ("trained" alone for a run from before snapshots)."""
    torch.manual_seed(run.config.seed)
    stages = {"initial": build_model(run.config).eval()}
    stages.update({f"epoch {e}": run.load_model(epoch=e) for e in run.snapshots()})
    if len(stages) == 1:
        stages["trained"] = run.load_model()
    return stages


# --------------------------------------------------------------------------- 01: defects left visible
def masked_count(ratio: float, num_patches: int) -> int:
    """Patches hidden by random masking, as ``masking.random_masks`` draws them (one stays visible)."""
    return min(round(ratio * num_patches), num_patches - 1)


def p_defect_visible(k: int, ratio: float, num_patches: int) -> float:
    """P(all k patches of a defect stay visible) when random masking hides round(r L) of L patches:
    C(L - k, m) / C(L, m), the chance that every masked patch is drawn from the other L - k."""
    m = masked_count(ratio, num_patches)
    return comb(num_patches - k, m) / comb(num_patches, m) if num_patches - k >= m else 0.0


def closed_form_table(num_patches: int, ratios: Sequence[float], ks: Iterable[int]) -> pd.DataFrame:
    """:func:`p_defect_visible` for each defect size k (rows) and mask ratio (columns "r = ...")."""
    ks = [int(k) for k in ks]
    return pd.DataFrame({f"r = {r}": [p_defect_visible(k, r, num_patches) for k in ks] for r in ratios},
                        index=pd.Index(ks, name="defect patches k"))


def simulate_defect_visible(num_patches: int, ratios: Sequence[float], ks: Sequence[int], trials: int,
                            generator: torch.Generator) -> list[dict]:
    """The closed form checked against ``trials`` masks from ``masking.random_masks`` per ratio.

    The defect is the first k patches (by symmetry any fixed set will do). Each record holds the
    closed form, the simulated frequency and z, their difference in standard errors.
    """
    records = []
    for r in ratios:
        draws = torch.cat([random_masks(num_patches, r, generator) for _ in range(trials)])
        for k in ks:
            simulated = (~draws[:, :k]).all(dim=1).float().mean().item()
            p = p_defect_visible(k, r, num_patches)
            standard_error = max((p * (1 - p) / trials) ** 0.5, 1e-12)
            records.append({"k": k, "r": r, "L": num_patches, "m": masked_count(r, num_patches),
                            "closed_form": p, "simulated": simulated, "trials": trials,
                            "z": (simulated - p) / standard_error})
    return records


def defect_visibility(test_set, indices: Sequence[int], random: tuple, complementary: tuple,
                      device: torch.device, *, keep: int = 4, batch_size: int = 32):
    """How much of each defect random masking leaves visible, and the error there.

    ``random`` and ``complementary`` are (model, config) of the two trained models; each test image
    is scored with its own seeded masks, exactly as in the evaluation. Returns a DataFrame, one row
    per defective image with a non-empty ground-truth mask, and the ``keep`` images whose defect lay
    most in visible patches: {index: (image, defect, visible, random map, complementary map)}.
    The maps are the raw squared error, whatever the configs' default score.
    """
    (random_model, random_config), (comp_model, comp_config) = random, complementary
    # the raw squared error (eq. 1's per-pixel term): smoothing or centring would blur the exact
    # zero that random masking leaves on a visible defect
    random_config = dataclasses.replace(random_config, anomaly_map="l2", smooth_sigma=0.0)
    comp_config = dataclasses.replace(comp_config, anomaly_map="l2", smooth_sigma=0.0)
    rows, examples, fractions = [], {}, {}
    for start in range(0, len(indices), batch_size):
        chosen = list(indices[start:start + batch_size])
        batch = [test_set[i] for i in chosen]
        images = torch.stack([b["image"] for b in batch])
        defects = torch.stack([b["mask"][0] for b in batch]) > 0.5  # (B, H, W)
        masks = image_masks(random_config, random_model.num_patches, chosen)[:, 0]
        visible = ~random_model.patch_to_pixel_mask(masks.unsqueeze(1))[:, 0, 0]
        random_maps = reconstruct_and_map(random_model, random_config, images, chosen, device)[1]
        comp_maps = reconstruct_and_map(comp_model, comp_config, images, chosen, device)[1]
        for j, index in enumerate(chosen):
            defect = defects[j]
            if not defect.any():
                continue
            seen, hidden = defect & visible[j], defect & ~visible[j]
            fractions[index] = float(seen.sum() / defect.sum())
            rows.append({
                "index": index, "category": batch[j]["category"], "defect_type": batch[j]["defect_type"],
                "defect_visible_fraction": fractions[index],
                "random: error on visible defect": _mean_or_nan(random_maps[j], seen),
                "random: error on masked defect": _mean_or_nan(random_maps[j], hidden),
                "complementary: error on defect": float(comp_maps[j][defect].mean()),
            })
            examples[index] = (images[j], defect, visible[j].float(), random_maps[j], comp_maps[j])
        # keep only the images to show: every image of a full test split would be held otherwise
        examples = {i: examples[i] for i in sorted(examples, key=fractions.get, reverse=True)[:keep]}
    return pd.DataFrame(rows), examples


def _mean_or_nan(values: torch.Tensor, where: torch.Tensor) -> float:
    return float(values[where].mean()) if where.any() else float("nan")


# --------------------------------------------------------------------------- 05: Table 2
def ablation_configs(base: TrainConfig, depths: Sequence[str], ratios: Sequence[float],
                     epochs: int) -> dict[tuple[str, float], TrainConfig]:
    """One configuration per Table 2 cell (ExDy name, mask ratio): ``base`` with the cell's depths,
    ratio and epochs (warmup shortened to fit), in the order depths x ratios."""
    cells = {}
    for name in depths:
        encoder_depth, decoder_depth = paper.parse_depths(name)
        for ratio in ratios:
            values = {**base.to_dict(), "depth": encoder_depth, "decoder_depth": decoder_depth,
                      "mask_ratio": float(ratio), "epochs": epochs,
                      "warmup_epochs": min(base.warmup_epochs, epochs)}
            cells[(name, float(ratio))] = TrainConfig.from_dict(values).validate()
    return cells


def cell_name(name: str, ratio: float) -> str:
    """"E2D4@0.75": how the study names a Table 2 cell."""
    return f"{name}@{ratio:g}"


def table2_grid(results: Mapping[tuple[str, float], float]) -> pd.DataFrame:
    """The cells' AUROC laid out as the paper's Table 2 (mask ratio rows, ExDy columns), NaN where
    not run; a depth or ratio outside the paper's grid gets its own row or column."""
    grid = pd.DataFrame(np.nan, index=paper.table2().index, columns=paper.table2().columns)
    for (name, ratio), value in results.items():
        grid.loc[ratio, name] = value
    return grid


def cells_not_run(results: Mapping[tuple[str, float], float]) -> list[str]:
    """The paper's cells this study did not run, by :func:`cell_name`."""
    grid = paper.table2()
    return [cell_name(c, r) for r in grid.index for c in grid.columns if (c, float(r)) not in results]


def paper_best_cell() -> tuple[str, float, float]:
    """(ExDy, ratio, AUROC) of the paper's best Table 2 cell."""
    stacked = paper.table2().stack()
    ratio, name = stacked.idxmax()
    return name, float(ratio), float(stacked.max())


# --------------------------------------------------------------------------- 06: Figure 3
def score_histogram(scores: pd.DataFrame, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(edges, normal counts, anomalous counts, overlap = the smaller of the two) of the paper's
    eq. 1 score (``score_eq1``), with bins shared by both classes."""
    edges = np.histogram_bin_edges(scores["score_eq1"], bins=bins)
    normal, _ = np.histogram(scores.loc[scores["label"] == 0, "score_eq1"], bins=edges)
    anomalous, _ = np.histogram(scores.loc[scores["label"] == 1, "score_eq1"], bins=edges)
    return edges, normal, anomalous, np.minimum(normal, anomalous)


def histogram_statistics(scores: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Per category: the share of anomalous images in the highest non-empty bin (the paper's
    Figure 3 remark), the share of images in the overlap of the two histograms, and a statistic a
    useless score cannot meet: the anomalous share among the top quarter of scores against the
    base rate (the anomalous share of the whole test split; a random score matches it)."""
    rows = {}
    for category, part in scores.groupby("category", sort=True):
        _, normal, anomalous, overlap = score_histogram(part, bins)
        top = np.nonzero(normal + anomalous)[0][-1]
        quarter = part.nlargest(max(1, len(part) // 4), "score_eq1")
        rows[category] = {"top_bin_anomalous_fraction": float(anomalous[top] / (normal[top] + anomalous[top])),
                          "overlap_fraction": float(2 * overlap.sum() / max(len(part), 1)),
                          "base_rate": float(part["label"].mean()),
                          "top_quarter_anomalous_fraction": float(quarter["label"].mean())}
    return pd.DataFrame.from_dict(rows, orient="index")
