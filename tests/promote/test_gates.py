"""The promotion gates on plain numbers: direction, thresholds, NaN, latency, data, test split."""

from __future__ import annotations

import math

import pytest

from mlops.config import PromoteConfig
from mlops.gates import Verdict, metric_gates, same_data, same_split

GOOD = {"roc_auc": 0.99, "accuracy": 0.95, "log_loss": 0.1}
GATES = PromoteConfig(
    thresholds={"roc_auc": 0.95, "log_loss": 0.3},
    metric="roc_auc",
    min_improvement=0.01,
    max_latency_p95_ms=50.0,
)


def verdict(
    challenger: dict[str, float],
    champion: dict[str, float] | None = None,
    latency: float = 5.0,
    config: PromoteConfig = GATES,
) -> Verdict:
    return Verdict(metric_gates(config, challenger, champion, latency))


def failed(result: Verdict) -> set[str]:
    return {gate.name for gate in result.gates if not gate.passed}


def test_no_champion_leaves_the_absolute_gates_alone_to_decide() -> None:
    assert verdict(GOOD).passed
    assert {g.name for g in verdict(GOOD).gates} == {
        "threshold:roc_auc",
        "threshold:log_loss",
        "latency_p95_ms",
    }
    assert failed(verdict({**GOOD, "roc_auc": 0.90})) == {"threshold:roc_auc"}


def test_lower_is_better_metrics_have_a_maximum() -> None:
    assert failed(verdict({**GOOD, "log_loss": 0.5})) == {"threshold:log_loss"}
    rmse = PromoteConfig(thresholds={"rmse": 60.0}, metric="rmse", min_improvement=1.0)
    assert verdict({"rmse": 55.0}, {"rmse": 57.0}, config=rmse).passed
    assert failed(verdict({"rmse": 56.5}, {"rmse": 57.0}, config=rmse)) == {"improvement:rmse"}
    assert "threshold:rmse" in failed(verdict({"rmse": 61.0}, config=rmse))


def test_worse_challenger_fails() -> None:
    result = verdict(GOOD, {**GOOD, "roc_auc": 0.995})
    assert failed(result) == {"improvement:roc_auc", "relative_improvement:roc_auc"}
    assert "gain -0.0050" in result.reasons[0]


def test_better_by_less_than_the_minimum_fails_and_beyond_it_passes() -> None:
    assert failed(verdict(GOOD, {**GOOD, "roc_auc": 0.985})) == {"improvement:roc_auc"}
    assert verdict(GOOD, {**GOOD, "roc_auc": 0.975}).passed


def test_relative_improvement_is_a_fraction_of_the_champion() -> None:
    relative = PromoteConfig(metric="roc_auc", min_relative_improvement=0.02)
    assert verdict(GOOD, {"roc_auc": 0.97}, config=relative).passed  # +2.06 %
    result = verdict(GOOD, {"roc_auc": 0.98}, config=relative)  # +1.02 %
    assert failed(result) == {"relative_improvement:roc_auc"}


@pytest.mark.parametrize("side", ["challenger", "champion"])
def test_nan_metric_never_passes(side: str) -> None:
    nan = {**GOOD, "roc_auc": math.nan}
    result = verdict(nan, GOOD) if side == "challenger" else verdict(GOOD, nan)
    assert "improvement:roc_auc" in failed(result)
    assert ("threshold:roc_auc" in failed(result)) == (side == "challenger")


def test_missing_threshold_metric_fails_as_nan() -> None:
    assert "threshold:roc_auc" in failed(verdict({"accuracy": 0.99, "log_loss": 0.1}))


def test_slow_challenger_fails_the_latency_gate() -> None:
    result = verdict(GOOD, latency=51.0)
    assert failed(result) == {"latency_p95_ms"}
    assert result.reasons == ["latency_p95_ms: 51.00 ms, bound 50 ms"]


def test_model_trained_on_other_data_is_not_comparable() -> None:
    assert same_data("data:challenger", "a" * 64, "a" * 64).passed
    assert not same_data("data:challenger", "a" * 64, "b" * 64).passed
    missing = same_data("data:champion", "a" * 64, None)
    assert not missing.passed
    assert "no data_digest" in missing.detail


def test_test_split_must_be_the_one_prepare_recorded() -> None:
    assert same_split("data:test_split", "a" * 64, "a" * 64).passed
    other = same_split("data:test_split", "a" * 64, "b" * 64)
    assert not other.passed
    assert "run prepare" in other.detail
    assert not same_split("data:test_split", "a" * 64, None).passed
