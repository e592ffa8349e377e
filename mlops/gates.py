"""The promotion gates, as pure functions of digests and metrics: easy to test, easy to read in a
decision. Each gate and why it is there: docs/tuning.md, "Promotion". A NaN never passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlops.config import PromoteConfig
from mlops.evaluate import greater_is_better


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str  # one line: the value, the bound, and why it failed


@dataclass(frozen=True)
class Verdict:
    gates: tuple[Gate, ...] = ()

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    @property
    def reasons(self) -> list[str]:
        return [f"{gate.name}: {gate.detail}" for gate in self.gates if not gate.passed]


def metric_gates(
    config: PromoteConfig,
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    latency_p95_ms: float,
) -> tuple[Gate, ...]:
    gates = [
        _threshold(name, challenger.get(name, math.nan), bound)
        for name, bound in config.thresholds.items()
    ]
    if champion is not None:
        new, old = challenger.get(config.metric, math.nan), champion.get(config.metric, math.nan)
        gates += _improvement(config, new, old)
    ok = latency_p95_ms <= config.max_latency_p95_ms
    detail = f"{latency_p95_ms:.2f} ms, bound {config.max_latency_p95_ms:g} ms"
    gates.append(Gate("latency_p95_ms", ok, detail))
    return tuple(gates)


def same_data(name: str, current: str, trained_on: str | None) -> Gate:
    """Whether a model was trained on the data prepared now (the data digest)."""
    if trained_on == current:
        return Gate(name, True, f"trained on the current data {current[:12]}")
    found = trained_on[:12] if trained_on else "no data_digest"
    return Gate(
        name, False, f"trained on {found}, the prepared data is {current[:12]}: not comparable"
    )


def same_split(name: str, scored_on: str, recorded: str | None) -> Gate:
    """Whether the test split read now is the one prepare recorded (the test split's digest)."""
    if recorded is None:
        return Gate(name, False, "the prepared data records no test split digest: run prepare")
    if scored_on != recorded:
        detail = f"test split {scored_on[:12]} is not the one prepared ({recorded[:12]})"
        return Gate(name, False, f"{detail}: run prepare")
    return Gate(name, True, f"scored on the prepared test split {scored_on[:12]}")


def _threshold(name: str, value: float, bound: float) -> Gate:
    higher = greater_is_better(name)
    ok = value >= bound if higher else value <= bound  # False for NaN either way
    return Gate(
        f"threshold:{name}", ok, f"{value:.4f}, must be {'>=' if higher else '<='} {bound:g}"
    )


def _improvement(config: PromoteConfig, new: float, old: float) -> list[Gate]:
    sign = 1.0 if greater_is_better(config.metric) else -1.0
    gain = sign * (new - old)  # > 0: the challenger is better; NaN if either is NaN
    relative = gain / abs(old) if old != 0 else (math.inf if gain > 0 else 0.0)
    shown = f"challenger {new:.4f} vs champion {old:.4f}"
    absolute, fraction = config.min_improvement, config.min_relative_improvement
    return [
        Gate(
            f"improvement:{config.metric}",
            gain >= absolute,
            f"{shown}: gain {gain:.4f}, need {absolute:g}",
        ),
        Gate(
            f"relative_improvement:{config.metric}",
            relative >= fraction,
            f"{shown}: gain {relative:.2%}, need {fraction:.2%}",
        ),
    ]
