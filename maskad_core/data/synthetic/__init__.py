"""The embedded default data set: procedurally drawn industrial textures and parts with defects.

Written to disk in MVTec AD's layout, so :class:`maskad_core.data.mvtec.MVTecAD` reads it unchanged.
It is synthetic and never to be mistaken for MVTec AD: the root holds README.md and metadata.json
saying so. Every image is drawn from its own numpy generator seeded by (seed, category, split,
index), so the same seed gives byte-identical PNGs. Drawing is vectorised numpy (signed distance
fields for shapes, filtered noise for surfaces); masks are exactly the pixels a defect changed.

The package's modules: ``drawing`` (scenes, shapes, noise), ``textures``, ``objects``, ``defects``,
``categories`` (what each category draws and how an image pair is drawn), ``writer`` (the set on
disk, the cached default set) and ``overview`` (a picture of a set).
"""

from maskad_core.data.synthetic.categories import (
    CATEGORY_SPECS,
    SYNTHETIC_CATEGORIES,
    CategorySpec,
    draw_pair,
    draw_sample,
)
from maskad_core.data.synthetic.overview import plot_overview
from maskad_core.data.synthetic.writer import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SEED,
    DEFAULT_TEST_DEFECTIVE,
    DEFAULT_TEST_GOOD,
    DEFAULT_TRAIN_GOOD,
    GENERATOR_VERSION,
    MARKER_NAME,
    default_data_root,
    foreign_entry,
    generate_synthetic,
    is_complete,
)

__all__ = [
    "CATEGORY_SPECS", "DEFAULT_IMAGE_SIZE", "DEFAULT_SEED", "DEFAULT_TEST_DEFECTIVE", "DEFAULT_TEST_GOOD",
    "DEFAULT_TRAIN_GOOD", "GENERATOR_VERSION", "MARKER_NAME", "SYNTHETIC_CATEGORIES", "CategorySpec",
    "default_data_root", "draw_pair", "draw_sample", "foreign_entry", "generate_synthetic", "is_complete", "plot_overview",
]
