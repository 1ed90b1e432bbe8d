"""The paper's published numbers, read from ``paper_tables.yaml`` (the only place they are typed)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import pandas as pd
import yaml

MVTEC_CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)


@lru_cache(maxsize=1)
def _tables() -> dict:
    text = resources.files("maskad_core.study").joinpath("paper_tables.yaml").read_text()
    return yaml.safe_load(text)


def table1() -> pd.DataFrame:
    """Table 1: image AUROC per MVTec AD category (index) for MKD, U-Net, DAGAN and the paper."""
    t = _tables()["table1"]
    return pd.DataFrame.from_dict(t["rows"], orient="index", columns=t["columns"])


def table1_printed_mean() -> pd.Series:
    t = _tables()["table1"]
    return pd.Series(t["printed_mean"], index=t["columns"], name="printed mean")


def table2() -> pd.DataFrame:
    """Table 2: mean image AUROC, mask ratio (index, float) by encoder/decoder depth (columns)."""
    t = _tables()["table2"]
    frame = pd.DataFrame.from_dict(t["rows"], orient="index", columns=t["columns"])
    frame.index = frame.index.astype(float)
    frame.index.name = "mask_ratio"
    return frame.sort_index()


def claims() -> dict:
    return dict(_tables()["claims"])


def setting() -> dict:
    return dict(_tables()["setting"])


def parse_depths(name: str) -> tuple[int, int]:
    """'E2D4' -> (2, 4): encoder and decoder block counts."""
    import re

    match = re.fullmatch(r"E(\d+)D(\d+)", name.strip().upper())
    if not match:
        raise ValueError(f"depth name {name!r} is not of the form ExDy, e.g. E2D4")
    return int(match.group(1)), int(match.group(2))
