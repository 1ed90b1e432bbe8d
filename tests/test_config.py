"""TrainConfig: paper defaults, YAML round trip, a stable hash, key=value overrides, validation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from maskad_core.losses import DEFAULT_L1_WEIGHT, DEFAULT_LPIPS_WEIGHT, DEFAULT_SSIM_WEIGHT
from maskad_core.training.config import UNHASHED_FIELDS, TrainConfig, field_defaults
from maskad_core.training.overrides import coerce_like, parse_assignments, parse_value

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_paper_recipe_where_it_gives_one():
    config = TrainConfig().validate()
    assert (config.lr, config.batch_size, config.warmup_epochs) == (1e-3, 16, 10)
    assert (config.masking, config.mask_ratio, config.num_views) == ("complementary", 0.75, 4)
    assert (config.depth, config.decoder_depth) == (2, 4)  # E2D4, the paper's best
    assert config.augment == ["crop", "rotate", "flip"]
    assert (config.ssim_weight, config.l1_weight, config.lpips_weight) == (
        DEFAULT_SSIM_WEIGHT, DEFAULT_L1_WEIGHT, DEFAULT_LPIPS_WEIGHT)
    assert config.data_root is None and config.categories is None  # embedded data, every category
    assert config.image_size == 128 and config.image_size % config.patch_size == 0


def test_yaml_round_trip_keeps_every_setting_and_the_hash(tmp_path):
    config = TrainConfig(categories=["screw", "bottle"], epochs=7, lr=2e-4, augment=["flip"],
                         max_test_images_per_category=5, data_root=str(tmp_path))
    path = tmp_path / "config.yaml"
    config.to_yaml(path)
    again = TrainConfig.from_yaml(path)
    assert again == config
    assert again.hash() == config.hash()
    assert again.categories == ["bottle", "screw"]  # one canonical order


def test_hash_is_the_same_in_another_process():
    config = TrainConfig(epochs=3, categories=["bottle"])
    code = ("from maskad_core.training.config import TrainConfig;"
            "print(TrainConfig(epochs=3, categories=['bottle']).hash())")
    other = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert other.stdout.strip() == config.hash()
    assert len(config.hash()) == 64


def test_hash_follows_results_not_execution_settings():
    base = TrainConfig()
    assert UNHASHED_FIELDS == {"num_workers", "device"}
    assert TrainConfig(num_workers=4, device="cpu").hash() == base.hash()
    assert TrainConfig(lr=2e-3).hash() != base.hash()
    assert TrainConfig(masking="random").hash() != base.hash()
    assert TrainConfig(categories=["b", "a"]).hash() == TrainConfig(categories=["a", "b"]).hash()


def test_overrides_are_parsed_by_field_type():
    config = TrainConfig().with_overrides([
        "epochs=3", "lr=2e-4", "categories=screw,bottle", "mask_ratio=0.5", "masking=random",
        "max_train_images_per_category=none", "max_test_images_per_category=4", "warmup_epochs=2",
        "augment=flip,crop",
    ])
    assert config.epochs == 3 and isinstance(config.epochs, int)
    assert config.lr == 2e-4 and isinstance(config.lr, float)
    assert config.categories == ["bottle", "screw"]
    assert config.mask_ratio == 0.5 and config.masking == "random"
    assert config.max_train_images_per_category is None
    assert config.max_test_images_per_category == 4
    assert config.augment == ["crop", "flip"]


def test_unknown_key_names_the_key_and_close_matches():
    with pytest.raises(ValueError, match=r"unknown config key 'epoch'.*epochs"):
        TrainConfig().with_overrides(["epoch=3"])
    with pytest.raises(ValueError, match=r"unknown config key 'zzz'; valid keys: data_root"):
        TrainConfig().with_overrides(["zzz=1"])
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig().with_overrides(["epochs"])


@pytest.mark.parametrize("override, message", [
    ("epochs=three", "bad value 'three' for epochs: expected an integer"),
    ("epochs=2.5", "bad value '2.5' for epochs"),
    ("lr=fast", "bad value 'fast' for lr: expected a number"),
    ("epochs=none", "bad value .none. for epochs: expected an integer"),
])
def test_bad_values_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().with_overrides([override])


@pytest.mark.parametrize("text, value", [
    ("none", None), ("NULL", None), ("~", None), (" None ", None),
    ("true", True), ("False", False),
    ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 1e-3), ("-1.5E2", -150.0), ("inf", float("inf")),
    ("a,b", ["a", "b"]), ("[a, b]", ["a", "b"]), ("0.5,0.75", [0.5, 0.75]), ("[0.5, 0.75]", [0.5, 0.75]),
    ("[1, none, x]", [1, None, "x"]), ("[]", []), ("[[1, 2], [3]]", [[1, 2], [3]]), ("a,", ["a"]),
    ("'none'", "none"), ("'a,b'", "a,b"), ("'a', \"b,c\"", ["a", "b,c"]),
    ("bottle", "bottle"), ("cuda:0", "cuda:0"), ("../data/mvtec_ad", "../data/mvtec_ad"),
    ("it's", "it's"), ("", ""), ("  ", ""),
])
def test_one_grammar_reads_every_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value), (text, parsed)
    assert parse_assignments([f"key={text}"]) == {"key": value}


def test_nan_parses_as_a_float_so_validation_can_refuse_it_by_name():
    assert math.isnan(parse_value("nan"))
    with pytest.raises(ValueError, match="lr must be a finite number"):
        TrainConfig().with_overrides(["lr=nan"]).validate()


def test_assignments_name_a_bad_item_and_a_mapping_passes_through():
    for item in ("epochs", "=3", " =3"):
        with pytest.raises(ValueError, match=f"{item!r} is not of the form key=value"):
            parse_assignments([item])
    assert parse_assignments({"data_root": "none", "epochs": 3}) == {"data_root": "none", "epochs": 3}
    assert parse_assignments(["a=1", "a=x=y"]) == {"a": "x=y"}  # the last one counts; "=" in values
    assert parse_assignments(None) == {} and parse_assignments([]) == {}


def test_overrides_read_none_words_lists_and_text_fields_by_the_grammar():
    config = TrainConfig(data_root="/data").with_overrides([
        "data_root=null", "categories=[screw, bottle]", "max_train_images_per_category=~",
        "map_standardization=none", "augment=none", "device=cuda:0"])
    assert config.data_root is None and config.categories == ["bottle", "screw"]
    assert config.max_train_images_per_category is None
    assert config.map_standardization == "none"  # a text setting that cannot be None: the word
    assert config.augment == []  # a list setting that cannot be None: no augmentation
    assert config.device == "cuda:0"
    assert TrainConfig().with_overrides(["data_root=/data/a,b"]).data_root == "/data/a,b"  # verbatim
    assert TrainConfig().with_overrides(["data_root='none'"]).data_root == "none"  # quoted: the text
    assert TrainConfig().with_overrides(["categories=01,'02'"]).categories == ["01", "02"]
    assert TrainConfig().with_overrides(["categories=bottle"]).categories == ["bottle"]
    assert TrainConfig().with_overrides({"mlp_ratio": 2}).mlp_ratio == 2.0
    assert TrainConfig().with_overrides(["epochs=1e1"]).epochs == 10


def test_a_config_file_is_read_with_the_same_grammar(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data_root: none\nlr: 1e-3\ncategories: screw,bottle\n"
                    "map_standardization: none\nmax_test_images_per_category: NULL\n")
    from_file = TrainConfig.from_yaml(path)
    from_line = TrainConfig().with_overrides([
        "data_root=none", "lr=1e-3", "categories=screw,bottle", "map_standardization=none",
        "max_test_images_per_category=NULL"])
    assert from_file == from_line and from_file.hash() == from_line.hash()
    assert from_file.lr == 1e-3 and from_file.data_root is None  # YAML leaves 1e-3 and none as text


def test_coerce_like_takes_the_type_of_a_reference_value():
    assert coerce_like("trials", "1e3", 20000) == 1000 and coerce_like("bins", 3, 10) == 3
    assert coerce_like("ratio", "1", 0.5) == 1.0 and type(coerce_like("ratio", "1", 0.5)) is float
    assert coerce_like("depths", "E2D2", ["E2D4"]) == ["E2D2"]
    assert coerce_like("ratios", "[0.5, 1]", [0.75]) == [0.5, 1.0]
    assert coerce_like("name", "2024", "x") == "2024" and coerce_like("flag", "true", False) is True
    assert coerce_like("anything", "none", None) is None
    for value, reference, expected in [("abc", 3, "an integer"), ("2.5", 3, "an integer"),
                                       ("none", 3, "an integer"), ("nan", 0.5, "a finite number"),
                                       ("a,b", [0.5], "a list of numbers"), ("1", True, "true or false"),
                                       ("a,b", "x", "a text")]:
        with pytest.raises(ValueError, match=f"bad value .*{value}.* for key: expected {expected}"):
            coerce_like("key", value, reference)


def test_invalid_mask_ratio_lists_valid_ratios():
    with pytest.raises(ValueError, match=r"mask_ratio=0\.7.*valid ratios.*0\.75"):
        TrainConfig(mask_ratio=0.7).validate()
    TrainConfig(mask_ratio=0.7, masking="random").validate()  # vanilla MAE takes any ratio
    with pytest.raises(ValueError, match="mask_ratio must be in"):
        TrainConfig(mask_ratio=1.0, masking="random").validate()


@pytest.mark.parametrize("settings, message", [
    ({"image_size": 100}, "image_size 100 is not a multiple of patch_size 16"),
    ({"embed_dim": 100, "num_heads": 3}, "embed_dim 100 is not divisible by num_heads 3"),
    ({"embed_dim": 30, "num_heads": 3}, "embed_dim 30 is not a multiple of 4"),
    ({"decoder_embed_dim": 130, "decoder_num_heads": 2}, "decoder_embed_dim 130 is not a multiple of 4"),
    ({"image_size": 32, "mask_ratio": 0.9}, "gives 10 views but .* only 4 patches"),
    ({"masking": "checkerboard"}, "masking 'checkerboard' is not one of: complementary, random"),
    ({"lpips": "maybe"}, "lpips 'maybe' is not one of"),
    ({"anomaly_map": "l3"}, "anomaly_map 'l3' is not one of"),
    ({"map_standardization": "global"}, "map_standardization 'global' is not one of: none, per_pixel"),
    ({"augment": ["shear"]}, "augment 'shear' is not one of: crop, rotate, flip"),
    ({"epochs": 0}, "epochs must be > 0"),
    ({"device": "tpu"}, "device 'tpu' is not one of"),
    ({"ssim_weight": 0, "l1_weight": 0, "lpips_weight": 0}, "all zero"),
])
def test_validation_names_the_bad_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings).validate()


def test_warmup_is_clamped_for_short_runs():
    assert TrainConfig(epochs=1000).effective_warmup_epochs() == 10
    assert TrainConfig(epochs=4).effective_warmup_epochs() == 2
    assert TrainConfig(epochs=1).effective_warmup_epochs() == 0.5


def test_yaml_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'"):
        TrainConfig.from_yaml(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        TrainConfig.from_yaml(bad)


def test_field_defaults_cover_every_field():
    defaults = field_defaults()
    assert list(defaults) == [f for f in TrainConfig.__dataclass_fields__]
    assert defaults["mask_ratio"] == 0.75
