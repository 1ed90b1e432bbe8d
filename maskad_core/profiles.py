"""The study's parameter profiles (``profiles.yaml``: smoke, cpu, mvtec, paper) and the training
configuration a notebook builds from its parameters.

A profile sets every parameter of every notebook; each notebook receives the keys it declares.
Keys that are TrainConfig fields set the training runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from maskad_core.config import FIELD_NAMES, TrainConfig
from maskad_core.paths import SOURCE_ROOT


@lru_cache(maxsize=1)
def _profiles() -> dict:
    text = resources.files("maskad_core").joinpath("profiles.yaml").read_text()
    return yaml.safe_load(text)


def profile_names() -> list[str]:
    return [name for name in _profiles() if not name.startswith("_")]


def parameter_keys() -> set[str]:
    """Every key a profile sets (the notebooks' parameters, ``profile`` aside)."""
    return {key for name in profile_names() for key in _profiles()[name]["parameters"]}


def profile_description(name: str) -> str:
    return str(_check_profile(name).get("description", "")).strip()


def load_profile(name: str, overrides: Mapping | Iterable[str] | None = None) -> dict:
    """The profile's notebook parameters (a fresh dict), with ``overrides`` applied.

    ``overrides`` is a mapping or ``key=value`` strings (values parsed as YAML); an override of a
    key that no profile defines is an error naming the valid keys.
    """
    params = dict(_check_profile(name)["parameters"])
    params["profile"] = name
    for key, value in parse_overrides(overrides).items():
        if key not in params:
            raise ValueError(
                f"unknown study parameter {key!r}; valid parameters: {', '.join(sorted(params))}"
            )
        params[key] = value
    return params


DEFAULT_EXECUTED_DIR = "book/executed"


def executed_dir(name: str) -> str:
    """Where ``maskad study --profile NAME`` writes its executed notebooks (relative to the book's
    root): ``book/executed`` unless the profile names its own edition folder (``executed_dir``), so
    that the mvtec edition and the default cpu edition live side by side in one book."""
    return str(_check_profile(name).get("executed_dir", DEFAULT_EXECUTED_DIR))


def _check_profile(name: str) -> dict:
    profiles = _profiles()
    if name not in profiles or name.startswith("_"):
        raise ValueError(f"unknown profile {name!r}; available profiles: {', '.join(profile_names())}")
    return profiles[name]


def parse_overrides(overrides: Mapping | Iterable[str] | None) -> dict:
    """``["epochs=3", "categories=[bottle, screw]"]`` -> ``{"epochs": 3, "categories": [...]}``."""
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"parameter {item!r} is not of the form key=value")
        try:
            parsed[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as error:
            raise ValueError(f"value of parameter {key.strip()!r} is not valid YAML: {error}") from None
    return parsed


def check_required(profile: str, params: Mapping) -> None:
    required = _check_profile(profile).get("requires", [])
    missing = [key for key in required if params.get(key) in (None, "")]
    if missing:
        raise ValueError(
            f"profile {profile!r} needs {', '.join(missing)}: pass e.g. -p {missing[0]}=/path/to/mvtec_ad"
        )


def profile_data_root(data_root: str | Path | None) -> str | None:
    """A profile's data_root as a path: None stays None (the synthetic set); a relative path is
    taken from the repository root, so profiles can name ``../shared/data/mvtec_ad``."""
    if data_root in (None, ""):
        return None
    path = Path(data_root).expanduser()
    if not path.is_absolute():
        path = SOURCE_ROOT / path
    return str(path.resolve())


def train_config(params: Mapping, **changes) -> TrainConfig:
    """A validated TrainConfig from a notebook's parameters, with ``changes`` applied.

    Only profile keys that are TrainConfig fields are read, so a notebook may pass its ``globals()``:
    an imported module named like a setting (``masking``) is not a parameter.
    """
    keys = set(FIELD_NAMES) & parameter_keys()
    values = {key: value for key, value in params.items() if key in keys}
    values.update(changes)
    values["data_root"] = profile_data_root(values.get("data_root"))
    return TrainConfig.from_dict(values).validate()
