"""The typed config: every shipped YAML loads, and each kind of mistake is named."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.config import EMBEDDED_OPTUNA_STORAGE, Config, as_dict, load_config
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
        ("train.random_forest.n_estimators=0", "train.random_forest.n_estimators must be"),
        ("train.linear.max_iter=1.5", "train.linear.max_iter"),
        ("train.torch_mlp.hidden_units=[8, true]", "train.torch_mlp.hidden_units[1]"),
        ("promote.thresholds.rmse=low", "promote.thresholds.rmse"),
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


def test_unknown_key_is_one_line_without_pydantic_details() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "configs/default.yaml", ["train.foo=1"])
    assert str(caught.value) == "unknown config key 'train.foo'"


def test_lists_become_tuples_and_paths_become_paths() -> None:
    config = load_config(REPO / "configs/default.yaml", ["data.categorical_columns=[a, b]"])
    assert config.data.categorical_columns == ("a", "b")
    assert isinstance(config.data.prepared_dir, Path)


@pytest.mark.parametrize("override", ["tune.storage=null", "tune.storage=~"])
def test_unset_optuna_storage_is_the_embedded_store(override: str) -> None:
    config = load_config(REPO / "configs/default.yaml", [override])
    assert config.tune.storage == EMBEDDED_OPTUNA_STORAGE


def test_optuna_storage_url_is_kept() -> None:
    url = "postgresql://u@db/optuna"
    assert load_config(REPO / "configs/default.yaml", [f"tune.storage={url}"]).tune.storage == url


def settings(section: object, raw: dict[str, Any], where: str = "") -> Iterator[tuple[str, bool]]:
    """(key, whether its value is the code's default) for each key the YAML sets that has one."""
    for spec in dataclasses.fields(section):  # type: ignore[arg-type]
        if spec.name not in raw:
            continue
        value, key = getattr(section, spec.name), f"{where}{spec.name}"
        if dataclasses.is_dataclass(value):
            yield from settings(value, raw[spec.name], f"{key}.")
        elif spec.default is not dataclasses.MISSING:
            yield key, value == spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            yield key, value == spec.default_factory()


def yaml_settings(name: str) -> dict[str, bool]:
    path = REPO / "configs" / name
    return dict(settings(load_config(path), yaml.safe_load(path.read_text())))


def test_default_yaml_spells_out_the_code_defaults() -> None:
    # The code holds the defaults (tests and benches build sections from a few keyword arguments);
    # default.yaml repeats every one as documentation, so the two must never disagree.
    found = yaml_settings("default.yaml")
    assert "train.random_forest.max_features" in found
    assert [key for key, same in found.items() if not same] == []


def test_regression_yaml_sets_only_what_differs_from_the_defaults() -> None:
    found = yaml_settings("regression.yaml")
    assert "train.random_forest.max_depth" in found
    assert [key for key, same in found.items() if same] == []
