"""maskad: the improved masked autoencoder (complementary masking) for multi-class industrial image
anomaly detection (Hu, Xiao, Kang, 2024), as a small tested library.

The method is the five modules at this level: ``model`` (the ViT MAE and eq. 3), ``masking`` (eq. 2),
``losses`` (eq. 4), ``scoring`` (eq. 1 and the anomaly maps) and ``metrics`` (AUROC, AUPRO). Around
it: ``data/`` (images), ``training/`` (settings and the driver), ``evaluation/`` (test splits,
detectors, new images), ``study/`` (what the notebooks and the book use) and ``cli/`` (``maskad``).

The public names below load on first use, so ``import maskad_core`` imports no torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "complementary_masks": "maskad_core.masking",
    "random_masks": "maskad_core.masking",
    "MaskedAutoencoder": "maskad_core.model",
    "MVTecAD": "maskad_core.data.mvtec",
    "TrainConfig": "maskad_core.training.config",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'maskad_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
