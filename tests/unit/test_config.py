"""The typed config: every shipped YAML loads, and each kind of mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import Config, as_dict, load_config
from mlops.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["default.yaml", "regression.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert isinstance(config, Config)
    assert config.train.families


def test_override_sets_nested_value_with_yaml_type() -> None:
    config = load_config(REPO / "configs/default.yaml", ["train.torch_mlp.hidden_units=[8, 4]"])
    assert config.train.torch_mlp.hidden_units == (8, 4)


def test_integer_is_accepted_where_a_float_is_expected() -> None:
    config = load_config(REPO / "configs/default.yaml", ["train.linear.C=2"])
    assert config.train.linear.C == 2.0
    assert isinstance(config.train.linear.C, float)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.bogus=1", "train.bogus"),
        ("train.torch_mlp.max_epochs=many", "train.torch_mlp.max_epochs"),
        ("data.task=clustering", "data.task"),
        ("seed=true", "seed"),
        ("train.families=[linear, svm]", "train.families[1]"),
        ("data.test_fraction=1.5", "data.test_fraction"),
        ("data.prepared_dir=3", "data.prepared_dir"),
    ],
)
def test_bad_value_is_an_error_naming_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(REPO / "configs/default.yaml", [override])


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\nregistered_model: y\nseed: 1\n")
    with pytest.raises(ConfigError, match="missing config key 'data'"):
        load_config(path)


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_override_without_equals_sign_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(REPO / "configs/default.yaml", ["seed"])


def test_resolved_config_is_plain_data() -> None:
    plain = as_dict(load_config(REPO / "configs/default.yaml"))
    assert plain["data"]["prepared_dir"] == "data/prepared/default"
    assert plain["train"]["torch_mlp"]["hidden_units"] == [64, 32]
