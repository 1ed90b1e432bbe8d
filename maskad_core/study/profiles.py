"""The study's parameter profiles (``profiles.yaml``: smoke, cpu, mvtec, paper) and the training
configuration a notebook builds from its parameters.

A profile sets every parameter of every notebook; each notebook receives the keys it declares.
Keys that are TrainConfig fields set the training runs. ``-p key=value`` overrides are read with the
one grammar of :mod:`maskad_core.training.overrides` (``data_root=none`` is None, ``a,b`` a list), as the
type of the key: TrainConfig's field type, or the type of the profile's own value. Everything is
checked by :func:`study_parameters` before any notebook starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from maskad_core.data.paths import SOURCE_ROOT
from maskad_core.training.config import FIELD_NAMES, TrainConfig
from maskad_core.training.overrides import coerce_like, parse_assignments, split_assignments


@lru_cache(maxsize=1)
def _profiles() -> dict:
    text = resources.files("maskad_core.study").joinpath("profiles.yaml").read_text()
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

    ``overrides`` is a mapping or ``key=value`` strings. Each overriding value takes its key's type
    (:func:`override_value`); an override of a key that no profile defines, an empty value or a
    value of the wrong type is a ValueError naming the key.
    """
    params = dict(_check_profile(name)["parameters"])
    params["profile"] = name
    for key, value in split_assignments(overrides).items():
        if key not in params:
            raise ValueError(
                f"unknown study parameter {key!r}; valid parameters: {', '.join(sorted(params))}"
            )
        params[key] = override_value(key, value, params[key])
    return params


def override_value(key: str, value, profile_value):
    """An override's value (text of the grammar, or a Python value) as ``key``'s type.

    A TrainConfig field is read as ``maskad train key=value`` reads it (the same text gives the same
    value: ``categories=bottle`` is ``["bottle"]``); any other key as the type of the profile's own
    value (``ablation_ratios=0.5,0.75`` a list of floats). An empty text is refused, saying what to
    write instead.
    """
    if isinstance(value, str) and not value.strip():
        raise ValueError(_empty_message(key, profile_value))
    if key in FIELD_NAMES:
        return getattr(TrainConfig().with_overrides({key: value}), key)
    return coerce_like(key, value, profile_value)


def _empty_message(key: str, profile_value) -> str:
    if key == "data_root":
        return ("-p data_root= gives no data folder: write data_root=null for the generated "
                "(synthetic) set, or data_root=PATH for a folder in MVTec AD layout")
    shown = ",".join(map(str, profile_value)) if isinstance(profile_value, list) else profile_value
    if shown is None:
        shown = "null"
    return f"-p {key}= gives no value: write {key}=VALUE (the profile's value: {key}={shown})"


def study_parameters(name: str, overrides: Mapping | Iterable[str] | None = None) -> dict:
    """What ``maskad study --profile NAME -p ...`` passes to the notebooks, every part checked
    before any notebook starts: :func:`load_profile` (keys, types, empty values), the profile's
    required keys, the training configuration (:func:`train_config`: ValueError naming the key) and
    the data folder (an existing folder, or null for the generated set)."""
    params = load_profile(name, overrides)
    check_required(name, params)
    train_config(params)
    check_data_root(params.get("data_root"))
    return params


def check_data_root(data_root: str | Path | None) -> None:
    """ValueError naming the resolved path when ``data_root`` is not None and not a folder."""
    path = profile_data_root(data_root)
    if path is not None and not Path(path).is_dir():
        raise ValueError(f"data_root {str(data_root)!r} is not a folder: {path} does not exist "
                         "(data_root=null runs on the generated set)")


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
    """``["epochs=3", "categories=[bottle, screw]", "data_root=none"]`` ->
    ``{"epochs": 3, "categories": ["bottle", "screw"], "data_root": None}``: the values read with
    :func:`maskad_core.training.overrides.parse_value`, not yet typed (:func:`load_profile` types them)."""
    return parse_assignments(overrides)


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
