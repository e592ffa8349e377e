"""Promotion and rollback against a real registry: which aliases move, what gets recorded."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlops.data import load_prepared
from mlops.promote import promote, rollback
from mlops.registry import (
    CANARY,
    CANARY_MODE_TAG,
    CANARY_WEIGHT_TAG,
    CHALLENGER,
    CHAMPION,
    alias_version,
    register,
)
from tests.e2e.helpers import config_args, run_main
from tests.promote.conftest import MODEL, Registry, aliases, point

pytestmark = pytest.mark.slow


def test_without_champion_a_challenger_passing_the_thresholds_becomes_champion(
    registry: Registry,
) -> None:
    point(CHALLENGER, registry.strong)
    decision = promote(registry.config)
    assert decision.promoted
    assert set(decision.metrics) == {"challenger"}
    assert aliases() == {
        "challenger": registry.strong,
        "champion": registry.strong,
        "previous": None,
    }


def test_without_champion_a_challenger_failing_a_threshold_is_not_promoted(
    registry: Registry,
) -> None:
    decision = promote(registry.config, version=registry.weak)
    assert not decision.promoted
    assert any(reason.startswith("threshold:roc_auc") for reason in decision.verdict.reasons)
    assert aliases()["champion"] is None


def test_better_challenger_beyond_the_minimum_moves_champion_and_keeps_previous(
    registry: Registry,
) -> None:
    point(CHAMPION, registry.weak)
    point(CHALLENGER, registry.strong)
    decision = promote(registry.with_gates(min_improvement=0.02))
    assert decision.promoted
    assert aliases() == {
        "challenger": registry.strong,
        "champion": registry.strong,
        "previous": registry.weak,
    }
    tags = MlflowClient().get_model_version(MODEL, registry.strong).tags
    assert tags["promotion.verdict"] == "promoted"
    assert tags["promotion.champion"] == registry.weak
    assert tags["promotion.data_digest"] == registry.digest
    assert tags["promotion.split_digest"] == load_prepared(registry.config.data).test_digest
    assert tags["promotion.champion_data_digest"] == registry.digest
    metrics = json.loads(tags["promotion.metrics"])
    assert metrics["challenger"]["roc_auc"] > metrics["champion"]["roc_auc"]
    run = MlflowClient().get_run(tags["promotion.run_id"])
    assert run.data.tags["mlops.step"] == "promote"
    assert {"challenger_test_roc_auc", "champion_test_roc_auc", "challenger_latency_p95_ms"} <= set(
        run.data.metrics
    )


def test_better_challenger_under_the_minimum_leaves_every_alias(registry: Registry) -> None:
    point(CHAMPION, registry.weak)
    decision = promote(registry.with_gates(min_improvement=0.5), version=registry.strong)
    assert not decision.promoted
    assert [r.split(":")[0] for r in decision.verdict.reasons] == ["improvement"]
    assert aliases() == {"challenger": None, "champion": registry.weak, "previous": None}
    tags = MlflowClient().get_model_version(MODEL, registry.strong).tags
    assert tags["promotion.verdict"] == "not promoted"
    assert "improvement:roc_auc" in tags["promotion.reasons"]


def test_worse_challenger_leaves_the_champion(registry: Registry) -> None:
    point(CHAMPION, registry.strong)
    decision = promote(registry.with_gates(thresholds={}), version=registry.weak)
    assert not decision.promoted
    assert aliases()["champion"] == registry.strong


def test_challenger_trained_on_other_data_is_not_judged(registry: Registry) -> None:
    point(CHAMPION, registry.weak)
    tags = {"family": "linear", "data_digest": "0" * 64, "git_commit": "test"}
    other = register(registry.strong_uri, MODEL, CHALLENGER, tags)
    decision = promote(registry.config)
    assert not decision.promoted
    assert decision.metrics == {}
    assert [r.split(":")[:2] for r in decision.verdict.reasons] == [["data", "challenger"]]
    assert aliases()["champion"] == registry.weak
    assert (
        MlflowClient().get_model_version(MODEL, other).tags["promotion.verdict"] == "not promoted"
    )


def test_slow_challenger_fails_the_latency_gate(registry: Registry) -> None:
    decision = promote(registry.with_gates(max_latency_p95_ms=1e-6), version=registry.strong)
    assert not decision.promoted
    assert [r.split(":")[0] for r in decision.verdict.reasons] == ["latency_p95_ms"]


def test_rollback_points_champion_back_at_previous_once(registry: Registry) -> None:
    point(CHAMPION, registry.weak)
    assert promote(registry.config, version=registry.strong).promoted
    assert rollback(registry.config) == (registry.strong, registry.weak)
    assert aliases()["champion"] == registry.weak
    assert aliases()["previous"] is None
    args = config_args(registry.tmp)
    assert run_main("promote.py", *args, "--rollback") == 1  # nothing left to roll back to


def test_promoted_model_loads_by_alias_and_predicts(registry: Registry) -> None:
    assert promote(registry.config, version=registry.strong).promoted
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    features, target = load_prepared(registry.config.data).xy("test")
    assert (model.predict(features) == target.to_numpy()).mean() > 0.9


def test_script_exit_codes_say_promoted_not_promoted_or_error(registry: Registry) -> None:
    args = config_args(registry.tmp)
    assert run_main("promote.py", *args) == 1  # no challenger
    point(CHALLENGER, registry.weak)
    assert run_main("promote.py", *args) == 3
    assert aliases()["champion"] is None
    assert run_main("promote.py", *args, "--version", registry.strong) == 0
    assert aliases()["champion"] == registry.strong


UNLOADABLE = """
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel


class Unloadable(PythonModel):
    def load_context(self, context):
        raise ImportError("needs a package this environment lacks")

    def predict(self, context, model_input, params=None):
        return model_input


set_model(Unloadable())
"""


def test_a_version_that_cannot_be_loaded_is_one_error_line(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = tmp_path / "unloadable.py"
    code.write_text(UNLOADABLE)
    with mlflow.start_run(run_name="unloadable"):
        uri = mlflow.pyfunc.log_model(name="model", python_model=str(code)).model_uri
    tags = {"family": "other", "data_digest": registry.digest, "git_commit": "test"}
    version = register(uri, MODEL, CHALLENGER, tags)
    assert run_main("promote.py", *config_args(registry.tmp), "--version", version) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(f"{MODEL} v{version} cannot be loaded: needs a package"), error
    assert aliases()["champion"] is None


def canary() -> tuple[str | None, str | None, str | None]:
    """The version @canary names, the weight and the mode tags."""
    tags = MlflowClient().get_registered_model(MODEL).tags
    return alias_version(MODEL, CANARY), tags.get(CANARY_WEIGHT_TAG), tags.get(CANARY_MODE_TAG)


def test_canary_script_sets_changes_and_stops_the_canary(registry: Registry) -> None:
    args = config_args(registry.tmp)
    assert run_main("canary.py", *args, "--version", registry.weak, "--weight", "10") == 0
    assert canary() == (registry.weak, "10", "split")
    shadow = ("--weight", "2.5", "--mode", "shadow")
    assert run_main("canary.py", *args, "--version", registry.weak, *shadow) == 0
    assert canary() == (registry.weak, "2.5", "shadow")
    assert run_main("canary.py", *args, "--stop") == 0
    assert canary() == (None, None, None)
    assert run_main("canary.py", *args, "--stop") == 0  # nothing to stop: said, not an error


@pytest.mark.parametrize(
    ("version", "weight", "expected"),
    [
        ("1", "101", "canary weight must be between 0 and 100 percent, got 101.0"),
        ("1", "-5", "canary weight must be between 0 and 100 percent, got -5.0"),
        ("99", "10", "MLflow error: "),
        ("2", "10", f"{MODEL} v2 is the champion already"),
    ],
    ids=["over-100", "negative", "unknown-version", "the-champion"],
)
def test_canary_script_refuses_in_one_line_and_changes_nothing(
    registry: Registry, caplog: pytest.LogCaptureFixture, version: str, weight: str, expected: str
) -> None:
    point(CHAMPION, registry.strong)
    assert registry.strong == "2"
    args = config_args(registry.tmp)
    assert run_main("canary.py", *args, "--version", version, "--weight", weight) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(expected) and "\n" not in error, error
    assert canary() == (None, None, None)


def test_promoting_the_canary_graduates_it(registry: Registry) -> None:
    args = config_args(registry.tmp)
    assert run_main("canary.py", *args, "--version", registry.strong, "--weight", "10") == 0
    assert run_main("promote.py", *args, "--version", registry.strong) == 0
    assert aliases()["champion"] == registry.strong
    assert canary() == (None, None, None)


def test_promoting_another_version_leaves_the_canary(registry: Registry) -> None:
    args = config_args(registry.tmp)
    assert run_main("canary.py", *args, "--version", registry.weak, "--weight", "10") == 0
    assert run_main("promote.py", *args, "--version", registry.strong) == 0
    assert canary() == (registry.weak, "10", "split")
