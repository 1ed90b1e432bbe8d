"""Every training and evaluation setting in one plain dataclass.

The defaults are the paper's recipe where the paper gives one (AdamW at 1e-3, 10 warmup epochs then
cosine decay, batch 16, complementary masking at r = 0.75, 2 encoder and 4 decoder blocks, the
SSIM + L1 + LPIPS loss, random crop/rotation/flip), the measured recipe where the paper is silent
(AdamW betas, input standardisation, loss weights, the anomaly map and its reduction: each decision
and its measurements are in ``recipe_log.yaml``, and a test keeps these defaults equal to it), and
CPU-sized where the paper's value needs GPUs: 128 px images, ViT-Tiny-like widths (encoder 192 wide
with 3 heads, decoder 128 wide with 4 heads) and 20 epochs. The paper's own score, eq. 1, is always
reported beside the default one. The ``paper`` profile in ``maskad_core/study/profiles.yaml`` sets 224 px,
ViT-Base-like widths, 1000 epochs and eq. 1 as its score.

A configuration's :meth:`TrainConfig.hash` names its run folder: the same settings always give the
same hash, in any process; settings that cannot change the result (workers, device) are left out.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from maskad_core import masking
from maskad_core.data.image_norm import IMAGE_STANDARDIZATIONS
from maskad_core.data.mvtec import AUGMENTATIONS, NON_SQUARE_RULES
from maskad_core.losses import (
    DEFAULT_L1_WEIGHT,
    DEFAULT_LPIPS_WEIGHT,
    DEFAULT_SSIM_WEIGHT,
    LPIPS_MODES,
)
from maskad_core.model import INPUT_NORMS
from maskad_core.scoring import ANOMALY_MAP_KINDS, MAP_STANDARDIZATIONS, REDUCTIONS
from maskad_core.training.overrides import parse_value, split_assignments, split_list, unquote

DEVICES = ("auto", "cpu", "cuda", "mps")

# Settings that change how fast a run goes but never what it computes: not part of the hash.
UNHASHED_FIELDS = frozenset({"num_workers", "device"})
# Settings that change how a trained model is scored, never its weights: runs that differ only in
# these share one training (train() copies the weights of such a "twin"; evaluation scores them anew).
SCORING_FIELDS = ("anomaly_map", "map_standardization", "smooth_sigma", "score_reduction",
                  "topk_fraction", "test_masking", "test_partitions", "eval_seed",
                  "max_test_images_per_category")
_INFINITY = float("inf")  # validate refuses every non-finite float setting (nan, inf, -inf)


# The largest image side a run may ask for: larger ones would die of memory, not of a clear error.
MAX_IMAGE_SIZE = 2048


@dataclass
class TrainConfig:
    """One training run and its evaluation.  Every field is a plain value (YAML-friendly)."""

    # data
    data_root: str | None = None  # None: the embedded synthetic set (synthetic.default_data_root)
    categories: list[str] | None = None  # None: every category found under data_root
    image_size: int = 128
    non_square: str = "squash"  # images not square: "squash" to the square, or "pad" (geometry.py)
    # the control for global brightness and contrast: "per_image" standardises every image the
    # model sees (image_norm.py); "none" leaves images as they are
    image_standardization: str = "none"
    augment: list[str] = field(default_factory=lambda: list(AUGMENTATIONS))
    max_train_images_per_category: int | None = None  # None: all; a small number for quick runs
    max_test_images_per_category: int | None = None
    # model (ViT encoder / decoder)
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 2
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_depth: int = 4
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    input_norm: str = "imagenet"  # standardise pixels inside the model ("none": raw [0, 1])
    # masking
    masking: str = "complementary"  # or "random": the vanilla MAE baseline
    mask_ratio: float = 0.75
    # optimisation
    epochs: int = 20
    batch_size: int = 16  # the global batch: split across processes under DDP
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95  # MAE's value; torch's 0.999 trains far slower here (recipe log)
    weight_decay: float = 0.05
    warmup_epochs: float = 10.0  # clamped to half the epochs when training is shorter
    grad_clip: float = 0.0  # 0: no clipping (the paper does not mention any)
    seed: int = 0
    # loss: ssim_weight * (1 - SSIM) + l1_weight * L1 + lpips_weight * LPIPS
    ssim_weight: float = DEFAULT_SSIM_WEIGHT
    l1_weight: float = DEFAULT_L1_WEIGHT
    lpips_weight: float = DEFAULT_LPIPS_WEIGHT
    lpips: str = "auto"  # "auto" (use LPIPS when its weights load), "required", "off"
    # evaluation (eq. 1, the l2 map's mean without smoothing, is always reported beside these)
    anomaly_map: str = "l2_centered"  # squared error less the image's mean offset (eq. 1: "l2")
    # "per_pixel": each pixel of the smoothed map as a z-score against the maps of the category's
    # normal training images at that pixel (scoring.MapStatistics); "none": the map as it is
    map_standardization: str = "per_pixel"
    smooth_sigma: float = 4.0  # pixels: a thirty-second of the default 128 px side
    score_reduction: str = "max"  # the headline image score: mean, max or topk of the map
    topk_fraction: float = 0.01
    test_masking: str | None = None  # None: the training masking; or score with the other one
    test_partitions: int = 1  # independent mask draws averaged per test image
    eval_seed: int = 0
    # execution (not hashed)
    num_workers: int = 0
    device: str = "auto"  # auto: cuda, then mps, then cpu

    def __post_init__(self) -> None:
        # Every value as its field's type (1 -> 1.0 for a float), so that equal settings hash equal.
        for name in FIELD_NAMES:
            setattr(self, name, _coerce(name, getattr(self, name)))
        # Same data in any order is the same data set: keep one canonical order.
        if self.categories is not None:
            self.categories = sorted(dict.fromkeys(self.categories))
        self.augment = [a for a in AUGMENTATIONS if a in set(self.augment)] + sorted(
            set(self.augment) - set(AUGMENTATIONS)
        )

    # ----------------------------------------------------------------- validation
    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad setting; return self when all are fine."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not -_INFINITY < value < _INFINITY:  # nan, inf, -inf
                raise ValueError(f"{item.name} must be a finite number, got {value}")

        def positive(name: str, allow_zero: bool = False) -> None:
            value = getattr(self, name)
            if value < 0 or (value == 0 and not allow_zero):
                raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")

        for name in ("image_size", "patch_size", "embed_dim", "depth", "num_heads",
                     "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "mlp_ratio",
                     "epochs", "batch_size", "lr", "topk_fraction", "test_partitions"):
            positive(name)
        for name in ("weight_decay", "warmup_epochs", "grad_clip", "smooth_sigma", "num_workers",
                     "ssim_weight", "l1_weight", "lpips_weight"):
            positive(name, allow_zero=True)
        for name in ("max_train_images_per_category", "max_test_images_per_category"):
            if getattr(self, name) is not None:
                positive(name)
        _check_limits(self)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        for name in ("embed_dim", "decoder_embed_dim"):
            if getattr(self, name) % 4:
                raise ValueError(f"{name} {getattr(self, name)} is not a multiple of 4 "
                                 "(the 2-D sin-cos positional embedding needs one)")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(
                f"decoder_embed_dim {self.decoder_embed_dim} is not divisible by "
                f"decoder_num_heads {self.decoder_num_heads}"
            )
        num_patches = (self.image_size // self.patch_size) ** 2
        for name in ("masking", "test_masking"):  # masking.check names the modes, ratios, patches
            if getattr(self, name) is not None:
                masking.check(getattr(self, name), self.mask_ratio, num_patches, setting=name)
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        _choice("lpips", self.lpips, LPIPS_MODES)
        _choice("input_norm", self.input_norm, tuple(INPUT_NORMS))
        _choice("anomaly_map", self.anomaly_map, ANOMALY_MAP_KINDS)
        _choice("map_standardization", self.map_standardization, MAP_STANDARDIZATIONS)
        _choice("non_square", self.non_square, NON_SQUARE_RULES)
        _choice("image_standardization", self.image_standardization, IMAGE_STANDARDIZATIONS)
        _choice("score_reduction", self.score_reduction, REDUCTIONS)
        for name in self.augment:
            _choice("augment", name, AUGMENTATIONS)
        if self.device.split(":")[0] not in DEVICES:
            raise ValueError(f"device {self.device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
        if self.ssim_weight + self.l1_weight + self.lpips_weight <= 0:
            raise ValueError("the loss weights ssim_weight, l1_weight, lpips_weight are all zero")
        return self

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        unknown = [k for k in values if k not in _FIELD_TYPES]
        if unknown:
            raise ValueError(_unknown_key_message(unknown[0]))
        return cls(**values)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file; unknown keys are an error naming the key."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        return cls.from_yaml_text(path.read_text(), source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "config") -> TrainConfig:
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{source} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"{source} must hold a mapping of settings, got {type(values).__name__}")
        return cls.from_dict(values)

    def with_overrides(self, overrides: Iterable[str] | Mapping | None) -> TrainConfig:
        """A copy with ``key=value`` strings (or a mapping) applied. Each value is read with the
        grammar of :mod:`maskad_core.training.overrides` and then as its field's type: ``data_root=none`` is
        None, ``categories=bottle`` is ``["bottle"]``, ``lr=1`` is 1.0; errors name the key."""
        values = self.to_dict()
        for key, value in split_assignments(overrides).items():
            if key not in _FIELD_TYPES:
                raise ValueError(_unknown_key_message(key))
            values[key] = value
        return TrainConfig(**values)

    # ----------------------------------------------------------------- identity
    def hashed_settings(self) -> dict:
        settings = {k: v for k, v in self.to_dict().items() if k not in UNHASHED_FIELDS}
        if settings["data_root"] is not None:
            settings["data_root"] = str(Path(settings["data_root"]).expanduser().resolve())
        return settings

    def training_settings(self) -> dict:
        """The hashed settings that determine the trained weights (all but SCORING_FIELDS)."""
        return {k: v for k, v in self.hashed_settings().items() if k not in SCORING_FIELDS}

    def hash(self) -> str:
        """sha256 hex digest of the canonical JSON of the settings that affect the result."""
        canonical = json.dumps(self.hashed_settings(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def num_views(self) -> int:
        """Views per image in training."""
        return masking.views_per_image(self.masking, self.mask_ratio)

    @property
    def eval_masking(self) -> str:
        """The masking used to score test images: test_masking, else the training masking."""
        return self.test_masking or self.masking

    def effective_warmup_epochs(self) -> float:
        """The paper's 10 warmup epochs, clamped to half the run so that short runs still decay."""
        return min(float(self.warmup_epochs), self.epochs / 2)


# --------------------------------------------------------------------- helpers
_FIELD_TYPES = typing.get_type_hints(TrainConfig)
FIELD_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig))


def field_defaults() -> dict:
    """Each setting's default value, in declaration order (for help texts)."""
    return TrainConfig().to_dict()


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of: {', '.join(map(str, allowed))}")


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, FIELD_NAMES, n=3, cutoff=0.5)
    if close:
        return f"unknown config key {key!r}; did you mean {' or '.join(close)}?"
    return f"unknown config key {key!r}; valid keys: {', '.join(FIELD_NAMES)}"


def _split_list(text: str) -> list[str]:
    """The items of a list setting written as text (``a,b``, ``[a, b]`` or one item ``a``),
    each verbatim (quotes removed): category names such as ``01`` stay text."""
    items = split_list(text)
    return [unquote(item) for item in (items if items is not None else [text])]


def _check_limits(config: TrainConfig) -> None:
    """The stated upper limits: the image side, the seeds' range, topk_fraction's 1."""
    if config.topk_fraction > 1:
        raise ValueError(f"topk_fraction must be in (0, 1], got {config.topk_fraction}")
    if config.image_size > MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be at most {MAX_IMAGE_SIZE} pixels (memory grows with "
                         f"its square; MVTec AD's largest images are 1024), got {config.image_size}")
    for name in ("seed", "eval_seed"):
        if not 0 <= getattr(config, name) < 2 ** 63:
            raise ValueError(f"{name} must be an integer in [0, 2**63), got {getattr(config, name)}")


def _coerce(key: str, value):
    """``value`` as field ``key``'s type: text (the command line, a YAML file's string) is read
    with the grammar of :mod:`maskad_core.training.overrides` first, so ``none``/``null``/``~`` and an empty
    text give None for an optional field (a text field that cannot be None takes the word
    ``none``: ``map_standardization=none``; a list field that cannot be None an empty list),
    ``1e-3`` a number, ``a,b`` or ``[a, b]`` a list."""
    optional, inner = _field_type(key)
    parsed = parse_value(value) if isinstance(value, str) else value
    if parsed is None or parsed == "":
        if optional:
            return None
        if isinstance(value, str) and parsed is None and inner is str:
            return "none"
        if isinstance(value, str) and typing.get_origin(inner) is list:
            return []  # augment=none, augment= or augment=[]: no augmentation
        if value is None:
            raise ValueError(f"{key} cannot be empty (expected {_type_name(inner)})")
    else:
        try:
            return _as_field_type(inner, parsed, value)
        except (TypeError, ValueError, KeyError):
            pass
    raise ValueError(f"bad value {value!r} for {key}: expected {_type_name(inner)}")


def _field_type(key: str) -> tuple[bool, object]:
    """(whether the field may be None, its type without the None)."""
    hint = _FIELD_TYPES[key]
    args = typing.get_args(hint)
    optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    return optional, (next((a for a in args if a is not type(None)), hint) if optional else hint)


def _as_field_type(inner, parsed, value):
    """``parsed`` (``value`` read by the grammar) as ``inner``; TypeError, ValueError or KeyError if
    it is not one."""
    if typing.get_origin(inner) is list:
        if isinstance(value, str):
            return _split_list(value)
        return [str(item) for item in (parsed if isinstance(parsed, (list, tuple)) else [parsed])]
    if inner is str:  # text verbatim: a folder named 2024, a path with a comma
        if isinstance(value, str):
            return unquote(value)
        if isinstance(parsed, (list, tuple, dict)):
            raise ValueError
        return str(parsed)
    if inner is bool:
        return parsed if isinstance(parsed, bool) else _BOOL_WORDS[str(parsed).lower()]
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
        raise ValueError
    if inner is int and not float(parsed).is_integer():
        raise ValueError
    return inner(parsed)


_BOOL_WORDS = {"1": True, "yes": True, "on": True, "0": False, "no": False, "off": False}


def _type_name(hint) -> str:
    if typing.get_origin(hint) is list:
        return "a comma-separated list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint)
    )
