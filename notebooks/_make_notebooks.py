"""Write the study's six notebooks (sources without outputs) from the cells below.

Run ``python notebooks/_make_notebooks.py`` after editing; the .ipynb files are generated, so edit
here, not in Jupyter. Each notebook: one H1 title, a ``parameters`` cell (every parameter with a
comment, defaults from the ``smoke`` profile), a setup cell, then its sections. Glue keys are listed
with their meaning in ``notebooks/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from maskad_core.study import load_profile  # noqa: E402

SMOKE = load_profile("smoke")

# name -> comment; defaults are the smoke profile's values. Comments must not contain "=".
TRAIN_PARAMETERS = {
    "data_root": "folder of MVTec-AD-style categories; None: the embedded synthetic set",
    "categories": "list of category names; None: every category under data_root",
    "image_size": "side of the square input images in pixels",
    "patch_size": "side of a ViT patch in pixels",
    "embed_dim": "encoder width",
    "depth": "encoder blocks (the E of ExDy)",
    "num_heads": "encoder attention heads",
    "decoder_embed_dim": "decoder width",
    "decoder_depth": "decoder blocks (the D of ExDy)",
    "decoder_num_heads": "decoder attention heads",
    "mask_ratio": "mask ratio r; complementary masking uses 1/(1-r) views",
    "epochs": "training epochs of the main model and of the random-mask baseline",
    "batch_size": "images per optimisation step",
    "lr": "AdamW learning rate",
    "warmup_epochs": "linear warmup epochs before the cosine decay",
    "seed": "random seed of training and masks",
    "lpips": "LPIPS term of the loss: auto, required or off",
    "max_train_images_per_category": "cap on training images per category; None: all",
    "max_test_images_per_category": "cap on test images per category; None: all",
}
EXTRA_PARAMETERS = {
    "ablation_depths": "encoder/decoder depths of the Table 2 grid, as ExDy names",
    "ablation_ratios": "mask ratios of the Table 2 grid",
    "ablation_epochs": "training epochs of every Table 2 cell",
    "closed_form_num_patches": "patches per image L in the closed form (196 for 224 px and 16 px patches)",
    "simulation_trials": "random masks drawn to check the closed form",
    "derivation_image_size": "image side for the masking derivation (224 as in the paper)",
    "derivation_patch_size": "patch side for the masking derivation (16 as in the paper)",
    "example_count": "how many example images to show",
    "histogram_bins": "bins of the score histograms",
}


def parameters_cell(extra: list[str], train: bool = True) -> nbformat.NotebookNode:
    lines = [
        "# Parameters: papermill replaces this cell's values; defaults are the smoke profile's.",
        f"profile = {SMOKE['profile']!r}  # name of the profile these values come from",
    ]
    names = (list(TRAIN_PARAMETERS) if train else []) + extra
    for name in names:
        comment = TRAIN_PARAMETERS.get(name) or EXTRA_PARAMETERS[name]
        assert "=" not in comment, name
        lines.append(f"{name} = {SMOKE[name]!r}  # {comment}")
    cell = new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


STDLIB = {"math", "time", "sys", "warnings", "pathlib"}


def _import_block(lines: list[str]) -> list[str]:
    """Import lines sorted as ruff's isort wants them: plain imports, then merged from-imports."""
    plain = sorted({line for line in lines if line.startswith("import ")}, key=lambda x: x.split()[1])
    merged: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("from "):
            module, names = line[5:].split(" import ")
            merged.setdefault(module, set()).update(n.strip() for n in names.split(","))
    froms = [f"from {m} import {', '.join(sorted(merged[m], key=str.lower))}" for m in sorted(merged)]
    return plain + froms


PATHS_AND_WARNINGS = """\
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path.cwd().resolve().parent))  # the repository, when run from notebooks/
# Runs are quiet (no progress bars); the training notebook reports whether LPIPS was active.
warnings.filterwarnings("ignore", message="IProgress not found")
warnings.filterwarnings("ignore", message="LPIPS disabled")
warnings.filterwarnings("ignore", category=UserWarning, module="torch")"""


def setup(*imports: str) -> str:
    """The imports cell (after PATHS_AND_WARNINGS): sorted as ruff's isort wants them."""
    every = ["import matplotlib.pyplot as plt", "from myst_nb import glue",
             "from maskad_core import study", *imports]

    def top(line: str) -> str:
        return line.split()[1].split(".")[0]

    sections = [
        _import_block([i for i in every if top(i) in STDLIB]),
        _import_block([i for i in every if top(i) not in STDLIB and top(i) != "maskad_core"]),
        _import_block([i for i in every if top(i) == "maskad_core"]),
    ]
    lines = []
    for section in sections:
        if section:
            lines += section + [""]
    lines += ['plt.rcParams.update({"figure.dpi": 80, "savefig.dpi": 80})']
    return "\n".join(lines)


NP, PD, TORCH = "import numpy as np", "import pandas as pd", "import torch"


MAIN_CONFIG = '''\
settings = dict(
    data_root=data_root, categories=categories, image_size=image_size, patch_size=patch_size,
    embed_dim=embed_dim, depth=depth, num_heads=num_heads, decoder_embed_dim=decoder_embed_dim,
    decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads, mask_ratio=mask_ratio,
    epochs=epochs, batch_size=batch_size, lr=lr, warmup_epochs=warmup_epochs, seed=seed,
    lpips=lpips, max_train_images_per_category=max_train_images_per_category,
    max_test_images_per_category=max_test_images_per_category,
)
main_config = study.train_config(settings)  # the profile's multi-class model (notebook 03)'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


# ============================================================================ 02
NB02 = [
    md(r"""
# Complementary masking, derived and checked

The paper's central change to the masked autoencoder (MAE) is how the mask is drawn
(Hu, Xiao and Kang 2024, Sec. 1.2). Plain MAE hides a random fraction $r$ of the patches once.
Complementary masking instead makes $n$ masked copies ("views") of the image whose *visible* parts
are disjoint and together cover the image, so that every patch is reconstructed by views that never
saw it. This notebook derives the identities behind it and checks each one numerically with the
library's own masks (`maskad_core.masking`) and composite (`MaskedAutoencoder.combine_views`).
"""),
    parameters_cell(["derivation_image_size", "derivation_patch_size"]),
    code(PATHS_AND_WARNINGS),
    code(setup(PD, TORCH, "from maskad_core import masking",
               "from maskad_core.model import MaskedAutoencoder") + "\n\n" + MAIN_CONFIG + '''

derivation_patches = (derivation_image_size // derivation_patch_size) ** 2
generator = torch.Generator().manual_seed(seed)
print(f"{derivation_image_size} px image, {derivation_patch_size} px patches: L = {derivation_patches} patches")'''),
    md(r"""
## How many views: $n = 1/(1-r)$

Each view shows a fraction $1 - r$ of the patches. For the visible parts to be disjoint and to cover
the image, $n$ views must satisfy $n (1 - r) = 1$, so $n = 1/(1 - r)$, which must be a whole number:
$r = 0.5, 0.75, 0.8, 0.9$ (the ratios of Table 2) give $n = 2, 4, 5, 10$. Other ratios are refused.
"""),
    code('''
ratios = [0.5, 0.75, 0.8, 0.9]
views_per_ratio = {r: masking.num_views(r) for r in ratios}
views_formula_holds = all(n == round(1 / (1 - r)) and abs(n * (1 - r) - 1) < 1e-9
                          for r, n in views_per_ratio.items())
try:
    masking.num_views(0.7)
    invalid_ratio_refused = False
except ValueError as error:
    invalid_ratio_refused = True
    print("r = 0.7 is refused:", error)
print("views per ratio:", views_per_ratio)
glue("views_per_ratio", views_per_ratio, display=False)'''),
    md(r"""
## The visible parts partition the image (eq. 2)

Let $M_i \in \{0, 1\}^L$ be view $i$'s mask (1 = masked). Eq. 2 says the visible parts
$\bar M_i = 1 - M_i$ sum to the all-ones map: $\sum_{i=1}^n \bar M_i = \mathbf 1$. Summing the masks
themselves gives $\sum_i M_i = n \mathbf 1 - \mathbf 1 = (n - 1)\mathbf 1$: **every patch is masked in
exactly $n - 1$ views**. Hence the composite of eq. 3,

$$y = \frac{1}{n - 1} \sum_{i=1}^{n} M_i \odot y_i ,$$

is, patch by patch, the mean of the $n - 1$ predictions made by views that did not see the patch. If
every view predicted the image perfectly ($y_i = x$), $y = \frac{1}{n-1}(n-1)\,x = x$.
The cell below checks all three statements for each ratio, on the paper's geometry.
"""),
    code('''
checks = {}
for r in ratios:
    n = masking.num_views(r)
    masks = masking.complementary_masks(derivation_patches, r, generator)  # (n, L), True = masked
    visible = (~masks).int()
    checks[f"partition_r{r}"] = bool((visible.sum(0) == 1).all())          # eq. 2
    checks[f"masked_n_minus_1_times_r{r}"] = bool((masks.int().sum(0) == n - 1).all())
    checks[f"shape_r{r}"] = tuple(masks.shape) == (n, derivation_patches)

# eq. 3 with the library's composite, on a small model of the paper's geometry (weights unused)
geometry = MaskedAutoencoder(img_size=derivation_image_size, patch_size=derivation_patch_size,
                             embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
                             decoder_depth=1, decoder_num_heads=2)
x = torch.rand(1, 3, derivation_image_size, derivation_image_size, generator=generator)
eq3_errors = {}
for r in ratios:
    n = masking.num_views(r)
    masks = masking.complementary_masks(derivation_patches, r, generator)
    views = torch.rand(1, n, 3, derivation_image_size, derivation_image_size, generator=generator)
    pixel_masks = geometry.patch_to_pixel_mask(masks.unsqueeze(0)).float()  # (1, n, 1, H, W)
    by_hand = (pixel_masks * views).sum(1) / (n - 1)                        # eq. 3 as printed
    library = geometry.combine_views(x, views, masks)
    perfect = geometry.combine_views(x, x.unsqueeze(1).expand(-1, n, -1, -1, -1), masks)
    eq3_errors[r] = float((library - by_hand).abs().max())
    checks[f"eq3_matches_library_r{r}"] = eq3_errors[r] <= 1e-6
    checks[f"perfect_views_give_input_r{r}"] = float((perfect - x).abs().max()) <= 1e-6
checks["views_formula"] = views_formula_holds
checks["invalid_ratio_refused"] = invalid_ratio_refused
all_identities_hold = all(checks.values())
eq3_max_abs_error = max(eq3_errors.values())
print(pd.Series(checks, name="holds").to_string())
print(f"largest |library - eq. 3| over all pixels and ratios: {eq3_max_abs_error:.2e}")
glue("identity_checks", checks, display=False)
glue("all_identities_hold", all_identities_hold, display=False)
glue("eq3_max_abs_error", eq3_max_abs_error, display=False)
assert all_identities_hold, [name for name, ok in checks.items() if not ok]'''),
    md(r"""
## The views of one image and their composite

Below, one test image from the data set in use (the caption says which) is cut into the $n = 4$ views
of $r = 0.75$: each shows a quarter of the patches, no two show the same patch, and adding the four
visible parts gives back the image exactly (the last panel). This is eq. 2 on pixels.
"""),
    code('''
from maskad_core.data import MVTecAD

test_set = MVTecAD(study.data_root_of(main_config), categories=main_config.categories,
                   split="test", image_size=derivation_image_size)
index = next(i for i in range(len(test_set)) if test_set[i]["label"] == 1)
item = test_set[index]
image = item["image"].unsqueeze(0)
image_caption = (f"{item['category']} / {item['defect_type']} ({study.data_label(main_config)}), "
                 f"shown at {derivation_image_size} px")

r = 0.75
n = masking.num_views(r)
masks = masking.complementary_masks(derivation_patches, r, generator)
pixel_visible = 1 - geometry.patch_to_pixel_mask(masks.unsqueeze(0)).float()[0]  # (n, 1, H, W)
visible_parts = pixel_visible * image                                              # (n, 3, H, W)
views_sum_to_image = bool(torch.equal(visible_parts.sum(0, keepdim=True), image))

fig_views, axes = plt.subplots(1, n + 2, figsize=(2.2 * (n + 2), 2.6))
axes[0].imshow(image[0].permute(1, 2, 0).numpy())
axes[0].set_title("image")
for i in range(n):
    axes[i + 1].imshow(visible_parts[i].permute(1, 2, 0).numpy())
    axes[i + 1].set_title(f"view {i + 1}: visible")
axes[-1].imshow(visible_parts.sum(0).clamp(0, 1).permute(1, 2, 0).numpy())
axes[-1].set_title("sum of visible parts")
for axis in axes:
    axis.axis("off")
fig_views.suptitle(f"complementary views, r = {r}, n = {n} ({image_caption})", fontsize=9)
fig_views.tight_layout()
plt.show()
print("visible parts sum to the image exactly:", views_sum_to_image)
glue("views_sum_to_image", views_sum_to_image, display=False)
glue("fig_complementary_views", fig_views, display=False)
glue("derivation_image_description", image_caption, display=False)'''),
    md(r"""
## What a trained model makes of the views (eq. 3)

The profile's multi-class model (trained in the training notebook, re-used here from its cached run)
predicts every patch of every view; each view's prediction $y_i$ is shown with the patches it saw
greyed out, then the composite $y$ of eq. 3 and the squared error map of eq. 1. Under a reduced
budget the predictions are blurry; what matters here is that each patch of $y$ comes only from views
that did not see it.
"""),
    code('''
from maskad_core.train import train

run = train(main_config, quiet=True)
model = run.load_model().eval()
small = torch.nn.functional.interpolate(image, size=main_config.image_size, mode="bilinear",
                                        antialias=True, align_corners=False).clamp(0, 1)
model_masks = masking.complementary_masks(model.num_patches, main_config.mask_ratio, generator)
with torch.no_grad():
    predictions = model.predict_views(small, model_masks)          # (1, n, 3, h, w)
    composite = model.combine_views(small, predictions, model_masks)
error_map = ((small - composite) ** 2).mean(1)[0]
seen = 1 - model.patch_to_pixel_mask(model_masks.unsqueeze(0)).float()[0]  # 1 where visible
n_model = model_masks.shape[0]
fig_model, axes = plt.subplots(1, n_model + 3, figsize=(2.0 * (n_model + 3), 2.5))
axes[0].imshow(small[0].permute(1, 2, 0).numpy())
axes[0].set_title("input")
for i in range(n_model):
    shown = predictions[0, i].clamp(0, 1) * (1 - 0.6 * seen[i])
    axes[i + 1].imshow(shown.permute(1, 2, 0).numpy())
    axes[i + 1].set_title(f"$y_{i + 1}$", fontsize=9)
axes[-2].imshow(composite[0].clamp(0, 1).permute(1, 2, 0).numpy())
axes[-2].set_title("composite $y$ (eq. 3)", fontsize=9)
axes[-1].imshow(error_map.numpy(), cmap="inferno")
axes[-1].set_title("$(x - y)^2$", fontsize=9)
for axis in axes:
    axis.axis("off")
fig_model.tight_layout()
plt.show()
glue("fig_model_views", fig_model, display=False)'''),
    md(r"""
## The uneven case: 196 patches with $n = 5$ and $n = 10$

With $L = 196$ patches, $n = 4$ divides $L$ (49 visible patches per view), but $n = 5$ and $n = 10$
do not: $196 = 5 \cdot 39 + 1 = 10 \cdot 19 + 6$. The library deals a random permutation of the
patches to the views in turn, so visible counts differ by at most one and the partition still holds;
the effective mask ratio of a view is then $1 - |\bar M_i| / L$, slightly off the nominal $r$.
"""),
    code('''
uneven = {}
rows = []
for r in (0.8, 0.9):
    n = masking.num_views(r)
    masks = masking.complementary_masks(derivation_patches, r, generator)
    counts = sorted((~masks).sum(1).tolist(), reverse=True)
    uneven[n] = counts
    checks_uneven = bool(((~masks).int().sum(0) == 1).all()) and max(counts) - min(counts) <= 1
    rows.append({"r": r, "n": n, "L": derivation_patches, "visible per view": counts,
                 "effective ratios": sorted({round(1 - c / derivation_patches, 4) for c in counts}),
                 "partition holds": checks_uneven})
uneven_frame = pd.DataFrame(rows).set_index("r")
uneven_partition_holds = bool(uneven_frame["partition holds"].all())
display(uneven_frame)
glue("uneven_visible_counts", uneven, display=False)
glue("uneven_partition_holds", uneven_partition_holds, display=False)
glue("uneven_frame", uneven_frame, display=False)'''),
    code('''
nb02_provenance = (f"masking identities: {derivation_image_size} px, {derivation_patch_size} px patches "
                   f"(L = {derivation_patches}), seed {seed}; image: {image_caption}; trained model: "
                   + study.provenance(main_config, profile=profile))
print(nb02_provenance)
glue("nb02_provenance", nb02_provenance, display=False)'''),
]


# ============================================================================ 03
NB03 = [
    md(r"""
# Training the multi-class model

One masked autoencoder is trained on every category of the data set at once, as in the paper
(the paper's baselines train one model per category). The recipe is the paper's where it gives one:
AdamW at learning rate $10^{-3}$ with a linear warmup, complementary masking, and the loss of eq. 4,
$L = \lambda_1 (1 - \mathrm{SSIM}) + \lambda_2 \ell_1 + \lambda_3 \mathrm{LPIPS}$. Where it gives none,
choices were made here: cosine decay after the warmup, and the loss weights of
`maskad_core.losses` (printed below). The image
size, widths and number of epochs come from the profile; the line below states them. The run is
cached by `maskad_core.train.train`: the other notebooks re-use it instead of training again.
"""),
    parameters_cell([]),
    code(PATHS_AND_WARNINGS),
    code(setup(TORCH, "from maskad_core import paper, runs", "from maskad_core.train import train")
         + "\n\n" + MAIN_CONFIG + '''

nb03_provenance = study.provenance(main_config, profile=profile)
print(nb03_provenance)
setting = paper.setting()
papers = (setting["image_size"], setting["epochs"], setting["batch_size"], setting["lr"])
ours = (main_config.image_size, main_config.epochs, main_config.batch_size, main_config.lr)
budget_vs_paper = (
    f"This run: {study.budget_description(main_config)}, on {study.data_label(main_config)}. "
    f"The paper: {setting['epochs']} epochs, batch {setting['batch_size']}, {setting['image_size']} px, "
    f"all {setting['categories']} MVTec AD categories, {setting['gpus']}. "
    + ("This is the paper's budget." if ours == papers else
       "This is a reduced budget, not the paper's setting: its numbers are not the paper's."))
print(budget_vs_paper)
glue("budget_vs_paper", budget_vs_paper, display=False)
loss_weights = {"ssim": main_config.ssim_weight, "l1": main_config.l1_weight,
                "lpips": main_config.lpips_weight}
print("loss weights (lambda_1 SSIM, lambda_2 L1, lambda_3 LPIPS):", loss_weights)
glue("loss_weights", loss_weights, display=False)
glue("nb03_provenance", nb03_provenance, display=False)
glue("data_description", study.data_description(main_config), display=False)
glue("budget_description", study.budget_description(main_config), display=False)
glue("model_description", study.model_description(main_config), display=False)'''),
    md("""
## Training (or re-using the finished run)
"""),
    code('''
reused = (runs.run_path(main_config) / runs.DONE_FILE).is_file()
run = train(main_config, quiet=True)
record = run.metrics["training"]
hardware = study.hardware_description(record["device"])
print(f"run {run.id}: {'re-used a finished run' if reused else 'trained now'}; {hardware}")
print(f"training wall time {record['wall_time_s']:.1f} s, {record['images_per_s']:.1f} images/s, "
      f"{record['images_seen']} images seen, device {record['device']}")
print("LPIPS active:", record["lpips_active"], "" if record["lpips_active"] else f"({record['lpips_reason']})")
glue("train_run_id", run.id, display=False)
glue("train_wall_time_s", round(float(record["wall_time_s"]), 1), display=False)
glue("images_per_s", round(float(record["images_per_s"]), 1), display=False)
glue("train_images_seen", int(record["images_seen"]), display=False)
glue("train_images_per_category", run.metrics["data"]["train_counts"], display=False)
glue("lpips_active", bool(record["lpips_active"]), display=False)
glue("lpips_reason", record["lpips_reason"] or "LPIPS active", display=False)
glue("hardware_description", hardware, display=False)
glue("train_final_loss", round(float(record["final_loss"]), 4), display=False)'''),
    md("""
## Loss per component

The total loss and its unweighted components per epoch (SSIM enters as $1 - \\mathrm{SSIM}$; LPIPS
is zero when it was inactive, see above), with the learning rate schedule.
"""),
    code('''
history = run.history
fig_loss, axes = plt.subplots(1, 5, figsize=(15, 2.8))
for axis, column in zip(axes, ["total", "ssim", "l1", "lpips", "lr"], strict=True):
    axis.plot(history["epoch"], history[column], marker="o", markersize=3)
    axis.set_title({"ssim": "1 - SSIM", "lr": "learning rate"}.get(column, column))
    axis.set_xlabel("epoch")
fig_loss.suptitle(f"training loss, {study.data_label(main_config)}, {main_config.image_size} px, "
                  f"{main_config.epochs} epochs", fontsize=10)
fig_loss.tight_layout()
plt.show()
glue("fig_loss_curves", fig_loss, display=False)
loss_drop = float(history["total"].iloc[0] - history["total"].iloc[-1])
glue("train_loss_drop", round(loss_drop, 4), display=False)
display(history.round(4))'''),
    md("""
## Reconstructions over training

The same test images reconstructed by the model at initialisation (same seed, no training) and with
the weights the run kept after its first epoch, a quarter, half and all of its epochs
(`runs.snapshot_epochs`): the eq. 3 composite $y$ at each stage, then the squared error map of eq. 1
of the trained model.
"""),
    code('''
from maskad_core.evaluate import reconstruct_and_map
from maskad_core.train import build_model, open_dataset

test_set, _ = open_dataset(main_config, "test")
picks = sorted({0, len(test_set) // 2, len(test_set) - 1})
images = torch.stack([test_set[i]["image"] for i in picks])
torch.manual_seed(main_config.seed)
stages = [("initial", build_model(main_config).eval())]
stages += [(f"epoch {e}", run.load_model(epoch=e)) for e in run.snapshots()]
if len(stages) == 1:  # a run from before snapshots were kept: the two ends of training
    stages.append(("trained", run.load_model()))
print("stages shown:", ", ".join(name for name, _ in stages))
glue("reconstruction_stages", [name for name, _ in stages], display=False)
outputs = [reconstruct_and_map(model, main_config, images, picks, torch.device("cpu"))
           for _, model in stages]
columns = 2 + len(stages)
fig_recon, axes = plt.subplots(len(picks), columns, figsize=(1.9 * columns, 2.0 * len(picks)),
                               squeeze=False)
for row, index in enumerate(picks):
    item = test_set[index]
    axes[row, 0].imshow(images[row].permute(1, 2, 0).numpy())
    axes[row, 0].set_title(f"{item['category']}/{item['defect_type']}", fontsize=8)
    for j, ((name, _), (recon, _maps)) in enumerate(zip(stages, outputs, strict=True)):
        axes[row, 1 + j].imshow(recon[row].clamp(0, 1).permute(1, 2, 0).numpy())
        axes[row, 1 + j].set_title(f"y, {name}", fontsize=8)
    final_map = outputs[-1][1][row]
    axes[row, -1].imshow(final_map.numpy(), cmap="inferno")
    axes[row, -1].set_title(f"error, mean {final_map.mean():.4f}", fontsize=8)
for axis in axes.ravel():
    axis.axis("off")
fig_recon.tight_layout()
plt.show()
glue("fig_reconstructions", fig_recon, display=False)'''),
]

# ============================================================================ 04
NB04 = [
    md(r"""
# Table 1: image AUROC per category

The paper's Table 1 reports the image-level AUROC of one model trained on all 15 MVTec AD categories,
beside three baselines that were trained one model per category (MKD, U-Net, DAGAN). Here the
profile's one multi-class model is scored per category with the paper's score (eq. 1, the mean
squared reconstruction error), next to baselines of the *same budget*: a vanilla MAE trained with
random masking, and the same model scored by the maximum or the top 1% of its error map instead of
the mean. Pixel AUROC and AUPRO (which the paper does not report) are given where masks exist.
"""),
    parameters_cell([]),
    code(PATHS_AND_WARNINGS),
    code(setup(PD, "from maskad_core import paper", "from maskad_core.evaluate import metrics_table",
               "from maskad_core.train import train") + "\n\n" + MAIN_CONFIG + '''

baseline_config = study.train_config(settings, masking="random")  # vanilla MAE, same budget
run = train(main_config, quiet=True)
baseline = train(baseline_config, quiet=True)
comparable = study.is_mvtec(main_config)
nb04_provenance = study.provenance(main_config, profile=profile)
print(nb04_provenance)
glue("nb04_provenance", nb04_provenance, display=False)'''),
    md("""
## The multi-class model beside the paper
"""),
    code('''
ours = metrics_table(run.metrics)
theirs = metrics_table(baseline.metrics)
frame = pd.DataFrame({
    "n_test": ours["n_test"],
    "ours (complementary, mean score)": ours["image_auroc_mean"],
    "vanilla MAE (random mask), same budget": theirs["image_auroc_mean"],
})
paper_table = paper.table1()
if comparable:
    for column in paper_table.columns:
        frame[f"paper: {column}"] = paper_table[column].reindex(frame.index)
    same = [c for c in frame.index if c in paper_table.index]
    frame.loc["mean", [f"paper: {c}" for c in paper_table.columns]] = paper_table.loc[same].mean().values
    comparability = (
        "These rows are MVTec AD categories with the official test split, so they are directly "
        "comparable with the paper's rows for the same categories, but at a reduced training budget "
        f"({study.budget_description(main_config)}; the paper: 224 px, 1000 epochs, 4 GPUs) and on "
        f"{len(same)} of the 15 categories (the paper columns' mean row is over these categories only)."
    )
else:
    comparability = (
        "These categories are synthetic (generated images, not MVTec AD): some share a name with an "
        "MVTec AD category, but the images differ, so the paper's numbers are NOT comparable with "
        "these rows. The paper's Table 1 is shown separately below, for reference only."
    )
frame.index.name = "category"
table1_frame = frame
print(comparability)
display(table1_frame.style.format(precision=3, na_rep="-"))
table1_mean_auroc = float(ours.loc["mean", "image_auroc_mean"])
baseline_random_auroc = float(theirs.loc["mean", "image_auroc_mean"])
glue("table1_frame", table1_frame.round(3), display=False)
glue("table1_mean_auroc", round(table1_mean_auroc, 3), display=False)
glue("baseline_random_auroc", round(baseline_random_auroc, 3), display=False)
glue("table1_auroc_by_category",
     {c: round(float(v), 4) for c, v in ours["image_auroc_mean"].drop("mean").items()}, display=False)
glue("table1_comparable", comparable, display=False)
glue("table1_comparability", comparability, display=False)
glue("paper_table1_printed_mean", float(paper.table1_printed_mean()["paper"]), display=False)'''),
    code('''
fig_table1, axis = plt.subplots(figsize=(max(6, 0.7 * len(ours)), 3.2))
plotted = frame[["ours (complementary, mean score)", "vanilla MAE (random mask), same budget"]]
if comparable:
    plotted = plotted.join(frame[["paper: paper"]])
plotted.plot.bar(ax=axis, width=0.8)
axis.set_ylim(0, 1.05)
axis.axhline(0.5, color="grey", lw=0.8, ls="--")
axis.set_ylabel("image AUROC")
axis.set_title(f"image AUROC per category ({study.data_label(main_config)}, "
               f"{main_config.image_size} px, {main_config.epochs} epochs)", fontsize=10)
axis.legend(fontsize=8, loc="lower right")
fig_table1.tight_layout()
plt.show()
glue("fig_table1", fig_table1, display=False)'''),
    md("""
The paper's Table 1 as printed (from `maskad_core.paper`, the one place its numbers are typed):
"""),
    code('''
display(paper.table1().style.format(precision=3))'''),
    md("""
## How these numbers relate to the paper's
"""),
    code('''
paper_mean = float(paper.table1_printed_mean()["paper"])
if comparable:
    ours_column = frame["ours (complementary, mean score)"]
    gaps = ", ".join(f"{c} {ours_column[c] - paper_table.loc[c, 'paper']:+.3f}" for c in same)
    table1_gap_statement = (
        f"Against the paper's own column on the same categories (ours minus paper): {gaps}. "
        f"Differences are expected from the budget alone: {study.budget_description(main_config)} "
        f"with {study.model_description(main_config)}, against the paper's 1000 epochs at 224 px "
        "on 4 GPUs; the paper also leaves the loss weights, the widths and the schedule open, so "
        "the choices made here may differ from the authors' (see the critical reading).")
else:
    table1_gap_statement = (
        f"The paper reports a mean image AUROC of {paper_mean:.3f} on MVTec AD. This study's "
        f"{table1_mean_auroc:.3f} is measured on generated images at a reduced budget "
        f"({study.budget_description(main_config)}), so the two numbers measure different things "
        "and their difference says nothing about whether the method reproduces. The mvtec profile "
        "(real categories) or the paper profile (on a GPU) gives comparable rows.")
print(table1_gap_statement)
glue("table1_gap_statement", table1_gap_statement, display=False)'''),
    md("""
## Mean, max and top-k scores

The paper scores an image by the mean of its error map (eq. 1). Small defects change few pixels, so
the mean dilutes them; the maximum and the mean of the top 1% of pixels are common alternatives.
"""),
    code('''
reduction_frame = pd.DataFrame({
    f"{label}: {reduction}": table[f"image_auroc_{reduction}"]
    for label, table in (("complementary", ours), ("random", theirs))
    for reduction in ("mean", "max", "topk")
})
display(reduction_frame.style.format(precision=3, na_rep="-"))
reduction_auroc = {f"{label}_{reduction}": round(float(table.loc["mean", f"image_auroc_{reduction}"]), 4)
                   for label, table in (("complementary", ours), ("random", theirs))
                   for reduction in ("mean", "max", "topk")}
glue("reduction_frame", reduction_frame.round(3), display=False)
glue("reduction_auroc", reduction_auroc, display=False)'''),
    md("""
## Localisation: pixel AUROC and AUPRO

Where the data set has ground-truth defect masks, the error map is also scored per pixel (pixel
AUROC) and per defect region (AUPRO up to a false-positive rate of 0.3). The paper reports neither.
"""),
    code('''
pixel_frame = pd.DataFrame({
    "pixel AUROC (complementary)": ours["pixel_auroc"],
    "AUPRO (complementary)": ours["pixel_aupro"],
    "pixel AUROC (random)": theirs["pixel_auroc"],
    "AUPRO (random)": theirs["pixel_aupro"],
    "note": ours["pixel_note"],
})
display(pixel_frame.style.format(precision=3, na_rep="-"))
glue("pixel_frame", pixel_frame.round(3), display=False)
glue("pixel_auroc_mean", round(float(ours.loc["mean", "pixel_auroc"]), 4), display=False)
glue("aupro_mean", round(float(ours.loc["mean", "pixel_aupro"]), 4), display=False)'''),
]

# ============================================================================ 05
NB05 = [
    md(r"""
# Table 2: depth and mask-ratio ablation

The paper's Table 2 varies the encoder and decoder depths (ExDy: x encoder blocks, y decoder blocks)
and the mask ratio $r$, and reports the mean image AUROC over the 15 categories. Its best cell is
E2D4 at $r = 0.75$: a shallow encoder with a deeper decoder. Here each cell of the grid is one
cached training run of the profile's budget per cell; the cells a profile does not run stay empty.
"""),
    parameters_cell(["ablation_depths", "ablation_ratios", "ablation_epochs"]),
    code(PATHS_AND_WARNINGS),
    code(setup(NP, PD, "import seaborn as sns", "from maskad_core import paper",
               "from maskad_core.train import train") + "\n\n" + MAIN_CONFIG + '''

paper_grid = paper.table2()
cells = {}
for name in ablation_depths:
    encoder_depth, decoder_depth = paper.parse_depths(name)
    for ratio in ablation_ratios:
        cells[(name, float(ratio))] = study.train_config(
            settings, depth=encoder_depth, decoder_depth=decoder_depth, mask_ratio=float(ratio),
            epochs=ablation_epochs, warmup_epochs=min(warmup_epochs, ablation_epochs))
first = next(iter(cells.values()))
nb05_provenance = "; ".join([
    f"Table 2 grid {', '.join(ablation_depths)} x r in {ablation_ratios}, complementary masking, "
    "one cached run per cell",
    f"data: {study.data_description(first)}",
    f"widths: encoder {first.embed_dim} ({first.num_heads} heads), decoder {first.decoder_embed_dim} "
    f"({first.decoder_num_heads} heads), {first.patch_size} px patches",
    f"budget per cell: {study.budget_description(first, masking=False)}",
    f"hardware: {study.hardware_description()}",
    f"seed {seed}",
    f"profile {profile!r}",
])
print(nb05_provenance)
glue("nb05_provenance", nb05_provenance, display=False)'''),
    md("""
## Training the cells (cached runs)
"""),
    code('''
import time

results, seconds = {}, {}
for (name, ratio), config in cells.items():
    started = time.perf_counter()
    cell_run = train(config, quiet=True)
    seconds[(name, ratio)] = cell_run.metrics["training"]["wall_time_s"]
    results[(name, ratio)] = float(cell_run.metrics["image_auroc"])
    print(f"{name} r={ratio}: image AUROC {results[(name, ratio)]:.3f} "
          f"(run {cell_run.id}, trained in {seconds[(name, ratio)]:.0f} s)")
ours_grid = pd.DataFrame(np.nan, index=paper_grid.index, columns=paper_grid.columns)
for (name, ratio), value in results.items():
    ours_grid.loc[ratio, name] = value
cells_run = [f"{name}@{ratio:g}" for name, ratio in results]
not_run = [f"{c}@{r:g}" for r in paper_grid.index for c in paper_grid.columns
           if (c, float(r)) not in results]
print(f"cells run: {len(cells_run)} of {paper_grid.size}; not run at this budget: {', '.join(not_run) or 'none'}")
glue("table2_frame", ours_grid.round(3), display=False)
glue("table2_auroc_by_cell", {k: round(v, 4) for k, v in zip(cells_run, results.values(), strict=True)}, display=False)
glue("table2_cells_run", cells_run, display=False)
glue("table2_cells_not_run", not_run, display=False)
glue("table2_train_seconds", round(float(sum(seconds.values())), 1), display=False)'''),
    md("""
## Heat maps: this study beside the paper

Left, the mean image AUROC of each cell run here (empty cells were not run at this budget); right,
the paper's Table 2 (from `maskad_core.paper`). The colour scales are separate: the two are
different experiments (data, image size and budget in the line above) and are compared by their
pattern across cells, not by value.
"""),
    code('''
sns.set_theme(style="white")
fig_heat, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for axis, grid, title in ((axes[0], ours_grid, f"this study ({study.data_label(main_config)}, "
                           f"{main_config.image_size} px, {ablation_epochs} epochs per cell)"),
                          (axes[1], paper_grid, "paper, Table 2 (MVTec AD, 224 px, 1000 epochs)")):
    sns.heatmap(grid, annot=True, fmt=".3f", cmap="viridis", ax=axis, cbar=True,
                mask=grid.isna(), linewidths=0.5, linecolor="white")
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("encoder/decoder depth")
    axis.set_ylabel("mask ratio r")
fig_heat.tight_layout()
plt.show()
glue("fig_table2_heatmap", fig_heat, display=False)
best_ours = max(results, key=results.get)
best_paper = paper_grid.stack().idxmax()
glue("table2_best_cell", f"{best_ours[0]}@{best_ours[1]:g}", display=False)
glue("table2_best_auroc", round(results[best_ours], 3), display=False)
glue("paper_table2_best_cell", f"{best_paper[1]}@{best_paper[0]:g}", display=False)
print(f"best cell here: {best_ours[0]} r={best_ours[1]:g} ({results[best_ours]:.3f}); "
      f"paper: {best_paper[1]} r={best_paper[0]:g} ({paper_grid.stack().max():.3f})")'''),
]

# ============================================================================ 06
NB06 = [
    md(r"""
# Figure 3: score histograms and ROC curves

The paper's Figure 3 shows, per category, histograms of the test anomaly scores of normal and of
anomalous images and where they overlap; the authors note that in all categories but leather and
transistor the highest-score bin holds mostly anomalous images. Here the same plot is drawn from the
per-image scores of the profile's multi-class model (eq. 1, the mean squared error), with the ROC
curve of each category.
"""),
    parameters_cell(["histogram_bins"]),
    code(PATHS_AND_WARNINGS),
    code(setup(NP, "import seaborn as sns", "from sklearn.metrics import roc_curve",
               "from maskad_core.metrics import image_auroc", "from maskad_core.train import train")
         + "\n\n" + MAIN_CONFIG + '''

run = train(main_config, quiet=True)
scores = run.scores
nb06_provenance = study.provenance(main_config, profile=profile)
print(nb06_provenance)
glue("nb06_provenance", nb06_provenance, display=False)'''),
    md("""
## Histograms per category

Bars: normal images (blue), anomalous images (orange), and the overlap of the two (the smaller of
the two counts in a bin, dark). The bins are per category.
"""),
    code('''
sns.set_theme(style="whitegrid")
palette = sns.color_palette("deep")
colors = {"normal": palette[0], "anomalous": palette[1], "overlap": "0.25"}
categories_here = sorted(scores["category"].unique())
columns = min(5, len(categories_here))
rows = -(-len(categories_here) // columns)
fig_hist, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.5 * rows), squeeze=False)
top_bin_anomalous_fraction, overlap_fraction = {}, {}
for axis, category in zip(axes.ravel(), categories_here, strict=False):
    part = scores[scores["category"] == category]
    edges = np.histogram_bin_edges(part["score_mean"], bins=histogram_bins)
    normal, _ = np.histogram(part.loc[part.label == 0, "score_mean"], bins=edges)
    anomalous, _ = np.histogram(part.loc[part.label == 1, "score_mean"], bins=edges)
    overlap = np.minimum(normal, anomalous)
    width = np.diff(edges)
    axis.bar(edges[:-1], normal, width=width, align="edge", color=colors["normal"], alpha=0.75)
    axis.bar(edges[:-1], anomalous, width=width, align="edge", color=colors["anomalous"], alpha=0.75)
    axis.bar(edges[:-1], overlap, width=width, align="edge", color=colors["overlap"])
    axis.set_title(category, fontsize=9)
    axis.tick_params(labelsize=7)
    top = np.nonzero(normal + anomalous)[0][-1]
    top_bin_anomalous_fraction[category] = round(float(anomalous[top] / (normal[top] + anomalous[top])), 3)
    overlap_fraction[category] = round(float(2 * overlap.sum() / max(len(part), 1)), 3)
for axis in axes.ravel()[len(categories_here):]:
    axis.axis("off")
handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in colors]
fig_hist.legend(handles, list(colors), loc="lower right", fontsize=8)
fig_hist.suptitle(f"test score histograms ({study.data_label(main_config)}, {main_config.image_size} px, "
                  f"{main_config.epochs} epochs)", fontsize=10)
fig_hist.tight_layout()
plt.show()
mostly_anomalous = [c for c, v in top_bin_anomalous_fraction.items() if v > 0.5]
print(f"highest-score bin mostly anomalous in {len(mostly_anomalous)} of {len(categories_here)} categories")
glue("fig_score_histograms", fig_hist, display=False)
glue("top_bin_anomalous_fraction", top_bin_anomalous_fraction, display=False)
glue("top_bin_mostly_anomalous_count", len(mostly_anomalous), display=False)
glue("histogram_categories", len(categories_here), display=False)
glue("score_overlap_fraction", overlap_fraction, display=False)'''),
    md("""
## ROC curves

The receiver operating characteristic of the mean score per category; the area under each curve is
the category's image AUROC of the Table 1 notebook.
"""),
    code('''
fig_roc, axis = plt.subplots(figsize=(5, 4.5))
roc_auroc = {}
for category in categories_here:
    part = scores[scores["category"] == category]
    if part["label"].nunique() < 2:
        continue
    fpr, tpr, _ = roc_curve(part["label"], part["score_mean"])
    roc_auroc[category] = round(float(image_auroc(part["label"].to_numpy(), part["score_mean"].to_numpy())), 4)
    axis.plot(fpr, tpr, lw=1.2, label=f"{category} ({roc_auroc[category]:.2f})")
axis.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
axis.set_xlabel("false positive rate")
axis.set_ylabel("true positive rate")
axis.set_title(f"ROC per category ({study.data_label(main_config)})", fontsize=10)
axis.legend(fontsize=6, ncol=2, loc="lower right")
fig_roc.tight_layout()
plt.show()
glue("fig_roc_curves", fig_roc, display=False)
glue("roc_auroc_by_category", roc_auroc, display=False)'''),
]

# ============================================================================ 01
NB01 = [
    md(r"""
# Why plain MAE misses defects

A masked autoencoder (MAE) trained on normal images learns to fill in hidden patches with what normal
images look like. Used for anomaly detection, it reconstructs an image from a random 25% of its
patches and scores the difference. The paper's point (Sec. 1.2): whatever lies in the *visible*
patches is copied into the reconstruction, so a defect that happens to fall there produces no error
at all. This notebook computes how often that happens, checks the formula by simulation, shows it on
trained models, and compares random with complementary masking at the same budget.
"""),
    parameters_cell(["closed_form_num_patches", "simulation_trials", "example_count"]),
    code(PATHS_AND_WARNINGS),
    code(setup(NP, PD, TORCH, "from math import comb", "from maskad_core import masking")),
    md(r"""
## The chance that a defect stays entirely visible

Random masking hides $m = \operatorname{round}(rL)$ of the $L$ patches, all $\binom{L}{m}$ choices
equally likely. A defect covering $k$ patches stays entirely visible when all $m$ masked patches are
drawn from the other $L - k$:

$$P(\text{defect visible} \mid k, r) = \frac{\binom{L-k}{m}}{\binom{L}{m}}
  = \prod_{j=0}^{k-1} \frac{L - m - j}{L - j} \approx (1 - r)^k .$$

For one patch at $r = 0.75$ that is 1 in 4; it falls quickly with $k$, but small defects (a scratch, a
speck) cover one or a few patches, and *partly* visible defects lose the error of their visible part.
Under complementary masking every patch is masked in $n - 1 \ge 1$ views, so the chance is 0.
"""),
    code('''
def p_visible(k: int, r: float, L: int) -> float:
    """P(all k defect patches visible) under random masking of round(r L) of L patches."""
    m = min(round(r * L), L - 1)  # as masking.random_masks: at least one patch stays visible
    return comb(L - k, m) / comb(L, m) if L - k >= m else 0.0


L = closed_form_num_patches
ratios = [0.5, 0.75, 0.8, 0.9]
ks = np.arange(1, 17)
closed_form_frame = pd.DataFrame({f"r = {r}": [p_visible(int(k), r, L) for k in ks] for r in ratios},
                                 index=pd.Index(ks, name="defect patches k"))
fine_r = np.round(np.arange(0.05, 0.951, 0.05), 2)
surface = np.array([[p_visible(int(k), r, L) for k in ks] for r in fine_r])

fig_closed, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for r in ratios:
    axes[0].semilogy(ks, closed_form_frame[f"r = {r}"], marker="o", ms=3, label=f"r = {r}")
axes[0].set_xlabel("defect size k (patches)")
axes[0].set_ylabel("P(defect entirely visible)")
axes[0].set_title(f"closed form, L = {L} patches", fontsize=10)
axes[0].legend(fontsize=8)
image = axes[1].imshow(np.log10(np.maximum(surface, 1e-12)), aspect="auto", origin="lower",
                       extent=[ks[0] - 0.5, ks[-1] + 0.5, fine_r[0] - 0.025, fine_r[-1] + 0.025],
                       cmap="magma", vmin=-8, vmax=0)
axes[1].set_xlabel("defect size k (patches)")
axes[1].set_ylabel("mask ratio r")
axes[1].set_title("log10 P(defect entirely visible)", fontsize=10)
fig_closed.colorbar(image, ax=axes[1])
fig_closed.tight_layout()
plt.show()
display(closed_form_frame.loc[[1, 2, 4, 9, 16]].style.format("{:.2e}"))
glue("fig_closed_form", fig_closed, display=False)
glue("closed_form_frame", closed_form_frame.loc[[1, 2, 4, 9, 16]], display=False)
glue("p_visible_k1_r075", round(p_visible(1, 0.75, L), 4), display=False)
glue("p_visible_k4_r075", float(f"{p_visible(4, 0.75, L):.3g}"), display=False)'''),
    md("""
## Checked by simulation

Masks drawn with the library's `masking.random_masks`, the very function the vanilla MAE baseline
trains and scores with; the defect is a fixed set of $k$ patches (by symmetry any set will do). The
simulated frequency should lie within a few standard errors $\\sqrt{p(1-p)/T}$ of the closed form.
"""),
    code('''
generator = torch.Generator().manual_seed(seed)
check_ks = [1, 2, 3, 4]
draws = torch.cat([masking.random_masks(L, r, generator) for r in ratios for _ in range(simulation_trials)])
draws = draws.view(len(ratios), simulation_trials, L)
records = []
for i, r in enumerate(ratios):
    for k in check_ks:
        all_visible = (~draws[i, :, :k]).all(dim=1).float().mean().item()
        p = p_visible(k, r, L)
        se = max((p * (1 - p) / simulation_trials) ** 0.5, 1e-12)
        records.append({"k": k, "r": r, "L": L, "m": min(round(r * L), L - 1), "closed_form": p,
                        "simulated": all_visible, "trials": simulation_trials,
                        "z": (all_visible - p) / se})
check_frame = pd.DataFrame(records)
closed_form_max_abs_z = float(check_frame["z"].abs().max())
closed_form_agrees = closed_form_max_abs_z < 4.5
display(check_frame.style.format({"closed_form": "{:.5f}", "simulated": "{:.5f}", "z": "{:+.2f}"}))
print(f"largest |z| {closed_form_max_abs_z:.2f} over {len(records)} cells: "
      f"{'agrees' if closed_form_agrees else 'DISAGREES'}")
complementary = torch.stack([masking.complementary_masks(L, r, generator) for r in ratios[1:2]])[0]
never_masked = int((complementary.sum(0) == 0).sum())
print(f"complementary masking, r = 0.75: patches masked in no view: {never_masked}")
glue("closed_form_check", records, display=False)
glue("closed_form_max_abs_z", round(closed_form_max_abs_z, 3), display=False)
glue("closed_form_agrees", closed_form_agrees, display=False)
glue("complementary_never_masked_patches", never_masked, display=False)'''),
    md("""
## On trained models: defects in visible patches produce no error

The vanilla MAE baseline of this study (random masking) and the paper's model (complementary masking)
are trained with the same budget (the training and Table 1 notebooks; cached runs). Each test image
is scored with its own seeded mask, exactly as in the evaluation. For the defective images with a
ground-truth mask, we measure which share of the defect's pixels fell in visible patches and the
reconstruction error there.
"""),
    code("""from maskad_core.evaluate import image_masks, reconstruct_and_map
from maskad_core.train import dataset_samples, open_dataset, train

""" + MAIN_CONFIG + """

baseline_config = study.train_config(settings, masking="random")  # vanilla MAE, same budget
run = train(main_config, quiet=True)
baseline = train(baseline_config, quiet=True)
nb01_provenance = study.provenance(main_config, profile=profile) + "; baseline: random masking, same settings"
print(nb01_provenance)
glue("nb01_provenance", nb01_provenance, display=False)

test_set, full = open_dataset(main_config, "test")
samples = dataset_samples(test_set)
defective = [i for i, s in enumerate(samples) if s.label == 1 and s.has_mask]
print(f"{len(defective)} defective test images with a ground-truth mask")"""),
    code("""
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
models = {"random": baseline.load_model(device).eval(), "complementary": run.load_model(device).eval()}
configs = {"random": baseline_config, "complementary": main_config}
stats = []
examples = {}
for start in range(0, len(defective), 32):
    indices = defective[start:start + 32]
    batch = [test_set[i] for i in indices]
    images = torch.stack([b["image"] for b in batch])
    defect = torch.stack([b["mask"][0] for b in batch]) > 0.5              # (B, H, W)
    random_masks = image_masks(baseline_config, models["random"].num_patches, indices)[:, 0]
    visible = 1 - models["random"].patch_to_pixel_mask(random_masks.unsqueeze(1)).float()[:, 0, 0]
    maps = {name: reconstruct_and_map(models[name], configs[name], images, indices, device)[1]
            for name in models}
    for j, index in enumerate(indices):
        d = defect[j]
        if not d.any():
            continue
        in_view = d & (visible[j] > 0.5)
        hidden = d & (visible[j] < 0.5)
        stats.append({
            "index": index, "category": batch[j]["category"], "defect_type": batch[j]["defect_type"],
            "defect_visible_fraction": float(in_view.sum() / d.sum()),
            "random: error on visible defect": float(maps["random"][j][in_view].mean()) if in_view.any() else np.nan,
            "random: error on masked defect": float(maps["random"][j][hidden].mean()) if hidden.any() else np.nan,
            "complementary: error on defect": float(maps["complementary"][j][d].mean()),
        })
        examples[index] = (images[j], d, visible[j], maps["random"][j], maps["complementary"][j])
stats_frame = pd.DataFrame(stats)
summary = stats_frame.drop(columns=["index", "category", "defect_type"]).mean()
display(summary.to_frame("mean over defective images").style.format("{:.4g}"))
glue("defect_visible_fraction_mean", round(float(summary["defect_visible_fraction"]), 3), display=False)
glue("random_error_visible_defect", float(f"{summary['random: error on visible defect']:.3g}"), display=False)
glue("random_error_masked_defect", float(f"{summary['random: error on masked defect']:.3g}"), display=False)
glue("complementary_error_defect", float(f"{summary['complementary: error on defect']:.3g}"), display=False)"""),
    md("""
Under random masking the visible patches are copied from the input, so the error on the visible part
of a defect is exactly zero; only the masked part of the defect can raise the score. The examples
below are the defective test images whose defect lay most in the visible patches.
"""),
    code("""
shown = stats_frame.sort_values("defect_visible_fraction", ascending=False).head(example_count)
fig_examples, axes = plt.subplots(len(shown), 4, figsize=(9, 2.3 * len(shown)), squeeze=False)
vmax = max(float(examples[i][3].max()) for i in shown["index"]) or 1.0
for row, (_, info) in enumerate(shown.iterrows()):
    image, defect, visible, random_map, complementary_map = examples[info["index"]]
    axes[row, 0].imshow(image.permute(1, 2, 0).numpy())
    axes[row, 0].contour(defect.numpy(), levels=[0.5], colors="red", linewidths=0.8)
    axes[row, 0].set_title(f"{info['category']}/{info['defect_type']}", fontsize=8)
    axes[row, 1].imshow((image * (0.25 + 0.75 * visible)).permute(1, 2, 0).numpy())
    axes[row, 1].contour(defect.numpy(), levels=[0.5], colors="red", linewidths=0.8)
    axes[row, 1].set_title(f"random mask: {info['defect_visible_fraction']:.0%} of defect visible", fontsize=8)
    axes[row, 2].imshow(random_map.numpy(), cmap="inferno", vmin=0, vmax=vmax)
    axes[row, 2].set_title("error, random masking", fontsize=8)
    axes[row, 3].imshow(complementary_map.numpy(), cmap="inferno", vmin=0, vmax=vmax)
    axes[row, 3].set_title("error, complementary masking", fontsize=8)
for axis in axes.ravel():
    axis.axis("off")
fig_examples.suptitle(f"{study.data_label(main_config)}, {main_config.image_size} px, "
                      f"{main_config.epochs} epochs; red: ground-truth defect", fontsize=9)
fig_examples.tight_layout()
plt.show()
glue("fig_defect_visible_examples", fig_examples, display=False)"""),
    md("""
## Image AUROC: random against complementary masking, same budget
"""),
    code("""
from maskad_core.evaluate import metrics_table

comparison = pd.DataFrame({
    "random masking (vanilla MAE)": metrics_table(baseline.metrics)["image_auroc_mean"],
    "complementary masking (paper)": metrics_table(run.metrics)["image_auroc_mean"],
})
fig_compare, axis = plt.subplots(figsize=(max(6, 0.6 * len(comparison)), 3))
comparison.plot.bar(ax=axis, width=0.8)
axis.set_ylim(0, 1.05)
axis.axhline(0.5, color="grey", lw=0.8, ls="--")
axis.set_ylabel("image AUROC (mean score)")
axis.set_title(f"same budget: {study.budget_description(main_config)}", fontsize=8)
axis.legend(fontsize=8, loc="lower right")
fig_compare.tight_layout()
plt.show()
display(comparison.style.format(precision=3, na_rep="-"))
glue("fig_random_vs_complementary", fig_compare, display=False)
glue("nb01_auroc_random", round(float(comparison.loc["mean"].iloc[0]), 3), display=False)
glue("nb01_auroc_complementary", round(float(comparison.loc["mean"].iloc[1]), 3), display=False)"""),
]


NOTEBOOKS = {
    "01_mae_baseline_failure": NB01,
    "02_complementary_masking": NB02,
    "03_training": NB03,
    "04_table1": NB04,
    "05_table2_ablation": NB05,
    "06_figure3_histograms": NB06,
}


def write_all() -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        notebook = new_notebook(cells=cells)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        notebook.metadata["language_info"] = {"name": "python"}
        for index, cell in enumerate(notebook.cells):
            cell.id = f"c{index:02d}"  # stable ids: regenerating gives the same files
        path = HERE / f"{name}.ipynb"
        nbformat.validate(notebook)
        nbformat.write(notebook, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all():
        print("wrote", path.relative_to(HERE.parent))
