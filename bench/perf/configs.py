"""The model configurations the benchmark measures; add one by appending to ``DEFAULT_CONFIGS``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MODEL_KEYS = (
    "img_size", "patch_size", "embed_dim", "depth", "num_heads",
    "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "mlp_ratio",
)
PROFILES_FILE = Path(__file__).resolve().parents[2] / "maskad_core" / "study" / "profiles.yaml"


@dataclass(frozen=True)
class BenchConfig:
    """One model to measure, with the batch sizes used for it.

    ``train_batch``/``infer_batch`` are kept small on CPU so that the whole benchmark fits in minutes;
    ``repeats`` timed calls follow one warm-up call and the median is reported.
    """

    name: str
    model: dict = field(default_factory=dict)
    mask_ratio: float = 0.75
    train_batch: int = 8
    infer_batch: int = 8
    repeats: int = 3
    paper: bool = False  # the paper's configuration: the targets are judged on it
    note: str = ""

    def __post_init__(self):
        unknown = set(self.model) - set(MODEL_KEYS)
        if unknown:
            raise ValueError(f"config {self.name!r}: unknown model keys {sorted(unknown)}; "
                             f"allowed: {', '.join(MODEL_KEYS)}")
        for key in ("train_batch", "infer_batch", "repeats"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"config {self.name!r}: {key} must be >= 1, got {getattr(self, key)}")

    def describe(self) -> str:
        m = self.model
        return (f"{m.get('img_size', 224)} px, patch {m.get('patch_size', 16)}, "
                f"E{m.get('depth', 2)}D{m.get('decoder_depth', 4)}, "
                f"enc {m.get('embed_dim', 768)}/{m.get('num_heads', 12)}h, "
                f"dec {m.get('decoder_embed_dim', 512)}/{m.get('decoder_num_heads', 16)}h, "
                f"r={self.mask_ratio}")


# used only while profiles.yaml lacks the profile
CPU_PROFILE_MODEL = dict(img_size=128, patch_size=16, embed_dim=192, depth=2, num_heads=3,
                         decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4)
PAPER_MODEL = dict(img_size=224, patch_size=16, embed_dim=768, depth=2, num_heads=12,
                   decoder_embed_dim=512, decoder_depth=4, decoder_num_heads=16)
TINY_MODEL = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


PROFILE_KEY_NAMES = {"image_size": "img_size"}  # profiles.yaml (TrainConfig) name -> model argument


def profile_model(profile: str, default: dict, profiles_file: Path = PROFILES_FILE) -> tuple[dict, float, str]:
    """A study profile's model settings and mask ratio from maskad_core/study/profiles.yaml.

    Returns (model settings, mask ratio, source). Reads the profile's "parameters" (TrainConfig
    names, e.g. image_size) or "model" section; falls back to ``default`` and r = 0.75 when the file
    or the profile is missing.
    """
    if profiles_file.is_file():
        profiles = yaml.safe_load(profiles_file.read_text()) or {}
        entry = profiles.get(profile) if isinstance(profiles, dict) else None
        if isinstance(entry, dict):
            section = entry.get("parameters", entry.get("model", entry))
            if isinstance(section, dict):
                named = {PROFILE_KEY_NAMES.get(k, k): v for k, v in section.items()}
                settings = {k: named[k] for k in MODEL_KEYS if named.get(k) is not None}
                if settings:
                    ratio = float(section.get("mask_ratio") or 0.75)
                    return {**default, **settings}, ratio, f"{profiles_file.name}, profile {profile!r}"
    return dict(default), 0.75, f"built-in default ({profiles_file.name} has no {profile!r} profile)"


def default_configs() -> list[BenchConfig]:
    cpu_model, cpu_ratio, cpu_source = profile_model("cpu", CPU_PROFILE_MODEL)
    paper_model, paper_ratio, paper_source = profile_model("paper", PAPER_MODEL)
    return [
        BenchConfig("cpu-profile", cpu_model, mask_ratio=cpu_ratio, train_batch=16, infer_batch=16,
                    repeats=5, note=f"model from {cpu_source}"),
        BenchConfig("paper-E2D4-224", paper_model, mask_ratio=paper_ratio, train_batch=4,
                    infer_batch=8, repeats=3, paper=True,
                    note=f"model from {paper_source}: the paper's E2D4 with ViT-Base-like widths "
                         "(the paper gives no widths); batch 4/8 on CPU to fit the time (paper: 16)"),
    ]


def quick_configs() -> list[BenchConfig]:
    return [BenchConfig("tiny", dict(TINY_MODEL), train_batch=2, infer_batch=2, repeats=2,
                        note="--quick: a smoke-test model, not a measurement")]


def with_overrides(config: BenchConfig, **changes) -> BenchConfig:
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
