"""New data in: a challenger trained on it is judged against the champion on the new holdout.

The champion (`strong`, the linear model) was trained on the bundled data A. Data B is the same
patients after an upstream change: the `... error` columns arrive with their sign flipped, which
A's coefficients read backwards. B is written to a CSV and prepared as `data.source`; models
trained on B are then promoted, or not, against the A-trained champion on B's test split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_breast_cancer

from mlops.config import Config, ForestParams, LinearParams, load_config
from mlops.data import PreparedData, load_prepared
from mlops.errors import RegistryError
from mlops.models.families import FamilyParams
from mlops.prepare import prepare
from mlops.promote import promote
from mlops.registry import CHALLENGER, CHAMPION, register
from mlops.train import run_family
from tests.conftest import FAST_OVERRIDES, REPO
from tests.promote.conftest import MODEL, Registry, aliases, point

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class NewData:
    config: Config  # data.source is B's CSV, prepared into its own folder
    digest: str
    test_digest: str
    linear: str  # versions trained on B
    stump: str


def prepare_and_train(
    tmp: Path, name: str, frame: pd.DataFrame, families: dict[str, FamilyParams]
) -> tuple[Config, PreparedData, list[str]]:
    """Write `frame` as `<name>.csv`, prepare it as data.source, register one version per family."""
    frame.to_csv(tmp / f"{name}.csv", index=False)
    overrides = [
        f"data.source={tmp / f'{name}.csv'}",
        f"data.prepared_dir={tmp / f'prepared-{name}'}",
        f"data.raw_dir={tmp / 'raw'}",
    ]
    config = load_config(REPO / "configs" / "default.yaml", [*overrides, *FAST_OVERRIDES])
    prepare(config)
    prepared = load_prepared(config.data)
    versions = []
    for family, params in families.items():
        run = run_family(config, family, params, prepared, run_name=f"{family}-{name}")
        tags = {"family": family, "data_digest": prepared.digest, "git_commit": "test"}
        versions.append(register(run.model_uri, MODEL, CHALLENGER, tags))
    return config, prepared, versions


def bundled() -> pd.DataFrame:
    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    return frame


@pytest.fixture(scope="module")
def new_data(built_registry: Registry) -> NewData:
    frame = bundled()
    errors = [column for column in frame.columns if column.endswith(" error")]
    frame[errors] = -frame[errors]
    stump = ForestParams(n_estimators=1, max_depth=1, min_samples_leaf=50)
    families = {"linear": LinearParams(), "random_forest": stump}
    config, prepared, versions = prepare_and_train(built_registry.tmp, "b", frame, families)
    assert prepared.test_digest is not None
    return NewData(config, prepared.digest, prepared.test_digest, *versions)


def test_challenger_trained_on_new_data_that_wins_on_its_holdout_replaces_the_champion(
    registry: Registry, new_data: NewData
) -> None:
    point(CHAMPION, registry.strong)
    decision = promote(new_data.config, version=new_data.linear)
    assert decision.promoted, decision.verdict.reasons
    assert decision.metrics["challenger"]["roc_auc"] > decision.metrics["champion"]["roc_auc"]
    assert aliases() == {
        "challenger": None,
        "champion": new_data.linear,
        "previous": registry.strong,
    }


def test_evidence_records_the_split_both_were_scored_on_and_both_metrics(
    registry: Registry, new_data: NewData
) -> None:
    point(CHAMPION, registry.strong)
    decision = promote(new_data.config, version=new_data.linear)
    tags = MlflowClient().get_model_version(MODEL, new_data.linear).tags
    assert tags["promotion.split_digest"] == new_data.test_digest == decision.split_digest
    assert tags["promotion.data_digest"] == new_data.digest
    assert tags["promotion.champion_data_digest"] == registry.digest != new_data.digest
    assert set(json.loads(tags["promotion.metrics"])) == {"challenger", "champion", "latency"}
    run = MlflowClient().get_run(tags["promotion.run_id"])
    assert run.data.params["split_digest"] == new_data.test_digest
    assert run.data.params["champion_data_digest"] == registry.digest
    champion_auc = decision.metrics["champion"]["roc_auc"]
    assert run.data.metrics["champion_test_roc_auc"] == pytest.approx(champion_auc)
    assert "challenger_test_roc_auc" in run.data.metrics


def test_champion_still_better_on_the_new_holdout_stays(
    registry: Registry, new_data: NewData
) -> None:
    point(CHAMPION, registry.strong)
    before = MlflowClient().get_model_version(MODEL, registry.strong).tags
    decision = promote(new_data.config, version=new_data.stump)
    assert not decision.promoted
    assert "improvement:roc_auc" in {r.split(": ")[0] for r in decision.verdict.reasons}
    assert aliases() == {"challenger": None, "champion": registry.strong, "previous": None}
    assert MlflowClient().get_model_version(MODEL, registry.strong).tags == before


def test_challenger_trained_on_the_old_data_is_not_judged_on_the_new(
    registry: Registry, new_data: NewData
) -> None:
    decision = promote(new_data.config, version=registry.strong)
    assert not decision.promoted
    assert decision.metrics == {}
    assert [r.split(":")[:2] for r in decision.verdict.reasons] == [["data", "challenger"]]


def test_champion_that_cannot_score_the_new_columns_stops_promote_with_one_message(
    registry: Registry,
) -> None:
    frame = bundled().drop(columns=["worst area"])
    config, _, (version,) = prepare_and_train(registry.tmp, "c", frame, {"linear": LinearParams()})
    point(CHAMPION, registry.strong)
    with pytest.raises(RegistryError, match=r"cannot score the current test split.*worst area"):
        promote(config, version=version)
    assert aliases()["champion"] == registry.strong
    assert promote(config, version=version, ignore_champion=True).promoted
