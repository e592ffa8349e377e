"""The canary on real servers: `scripts/canary.py` moves the alias in a real registry, the server
follows it (on POST /admin/reload, or its own alias check under load) and answers over HTTP.

Registered model `bc-canary`: v1 the default linear model (champion), v2 a weaker linear one (the
canary), v3 a model that fails its warm-up. Model `gen-canary`: v1 answers every row, v2 fails on
rows with x = -999 (the error-ratio test).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlops.registry import register
from mlops.serving.canary import Canary, CanaryTarget
from tests.conftest import REPO
from tests.e2e.helpers import run_main
from tests.serving.conftest import (
    GENERIC_MODEL,
    RECORDS_GENERIC,
    Store,
    generic_frame,
    log_from_code,
    using,
)
from tests.serving.server import Reply, Server, samples, start_server
from tests.serving.test_lifecycle import ADMIN, Load, eventually, loads

pytestmark = [pytest.mark.serving, pytest.mark.slow]

SAFE_MODEL = GENERIC_MODEL.replace(
    'raise ValueError("x = -999 breaks this model on purpose")', "pass"
)


def copy_versions(store: Store, name: str, sources: list[tuple[str, str]]) -> None:
    """Register `name` with one version per (model, version) of the store's, v1 the champion."""
    with using(store.uri):
        client = MlflowClient()
        client.create_registered_model(name)
        for model, version in sources:
            client.create_model_version(name, client.get_model_version(model, version).source)
        client.set_registered_model_alias(name, "champion", "1")


def canary(store: Store, name: str, *args: str) -> None:
    """Run scripts/canary.py against the store, as `make canary` / `make canary-stop` do."""
    config = ["--config", str(REPO / "configs" / "default.yaml")]
    with using(store.uri):
        assert run_main("canary.py", *config, "--set", f"registered_model={name}", *args) == 0


@pytest.fixture(scope="module")
def server(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    copy_versions(store, "bc-canary", [("bc-reload", "1"), ("bc-reload", "2"), ("bc-reload", "3")])
    logs = tmp_path_factory.mktemp("canary-server")
    server = start_server(
        store.uri,
        "models:/bc-canary@champion",
        logs,
        ["serve.reload_interval_s=0.5"],
        env={"MLOPS_ADMIN_TOKEN": "admin-secret"},
    )
    yield server
    server.stop()


@pytest.fixture
def bc(server: Server, store: Store) -> Iterator[Server]:
    """The server with no canary; stopped again after the test."""
    canary(store, "bc-canary", "--stop")
    reload(server)
    yield server
    canary(store, "bc-canary", "--stop")


def reload(server: Server) -> None:
    assert server.request("POST", "/admin/reload", headers=ADMIN).status == 200


def predict(server: Server, rows: list[list[float]], key: str | None = None) -> Reply:
    headers = {} if key is None else {"X-Routing-Key": key}
    return server.post("/invocations", {"instances": rows[:2]}, headers)


def answered_by(replies: list[Reply]) -> Counter[str]:
    assert {reply.status for reply in replies} == {200}
    return Counter(reply.headers["x-model-version"] for reply in replies)


def many(server: Server, rows: list[list[float]], n: int) -> list[Reply]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: predict(server, rows), range(n)))


def canary_active(server: Server) -> float:
    (sample,) = samples(server, "mlops_canary_active")
    return float(sample.value)


def test_weight_10_answers_about_a_tenth_of_2000_requests(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    canary(store, "bc-canary", "--version", "2", "--weight", "10")
    reload(bc)
    versions = answered_by(many(bc, bc_rows, 2000))
    assert set(versions) == {"1", "2"}
    assert 140 <= versions["2"] <= 260, versions  # 7-13 %
    assert canary_active(bc) == 1


def test_the_same_routing_key_always_lands_on_the_same_version(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    canary(store, "bc-canary", "--version", "2", "--weight", "30")
    reload(bc)
    seen: dict[str, set[str]] = {}
    for key, _ in itertools.product([f"user-{i}" for i in range(60)], range(4)):
        reply = predict(bc, bc_rows, key)
        seen.setdefault(key, set()).add(answered_by([reply]).most_common(1)[0][0])
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {"1", "2"}


def test_a_versioned_v2_request_is_answered_by_that_version(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    canary(store, "bc-canary", "--version", "2", "--weight", "50")
    reload(bc)
    tensor = {"name": "x", "shape": [2, 30], "datatype": "FP64", "data": bc_rows[:2]}
    for version in ("1", "2") * 10:
        reply = bc.post(f"/v2/models/bc-canary/versions/{version}/infer", {"inputs": [tensor]})
        assert reply.status == 200, reply.body
        assert reply.json()["model_version"] == reply.headers["x-model-version"] == version


def test_prediction_metrics_and_drift_gauges_carry_the_version(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    canary(store, "bc-canary", "--version", "2", "--weight", "50")
    reload(bc)
    assert set(answered_by(many(bc, bc_rows, 100))) == {"1", "2"}
    for name in (
        "mlops_predicted_rows_total",
        "mlops_batch_predict_duration_seconds_count",
        "mlops_predictions_total",
        "mlops_model_requests_total",
    ):
        assert {s.labels["version"] for s in samples(bc, name)} >= {"1", "2"}, name
    eventually(
        lambda: {s.labels["version"] for s in samples(bc, "mlops_drift_window_rows")} == {"1", "2"}
    )
    psi = {s.labels["version"] for s in samples(bc, "mlops_feature_drift_psi")}
    assert psi == {"1", "2"}
    info = {
        (s.labels["version"], s.labels["alias"]): s.value for s in samples(bc, "mlops_model_info")
    }
    assert info[("1", "champion")] == 1 and info[("2", "canary")] == 1


def test_a_canary_that_fails_its_warm_up_never_answers(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    failures = loads(bc, "canary", "failure")
    canary(store, "bc-canary", "--version", "3", "--weight", "100")
    reload(bc)
    assert loads(bc, "canary", "failure") == failures + 1
    assert answered_by(many(bc, bc_rows, 200)) == {"1": 200}
    assert canary_active(bc) == 0
    assert "canary version 3 not in rotation, the champion answers" in bc.log()
    tensor = {"name": "x", "shape": [1, 30], "datatype": "FP64", "data": bc_rows[:1]}
    reply = bc.post("/v2/models/bc-canary/versions/3/infer", {"inputs": [tensor]})
    assert reply.status == 404 and b"(serving 1)" in reply.body  # named, it is still not served


def test_stop_returns_every_request_to_the_champion(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    canary(store, "bc-canary", "--version", "2", "--weight", "50")
    reload(bc)
    assert set(answered_by(many(bc, bc_rows, 100))) == {"1", "2"}
    canary(store, "bc-canary", "--stop")
    reload(bc)
    assert answered_by(many(bc, bc_rows, 300)) == {"1": 300}
    assert canary_active(bc) == 0


def test_no_request_fails_through_start_weight_change_and_stop_under_load(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    """The server's own alias check (every 0.5 s) picks each change up; no admin call."""
    with Load(lambda: predict(bc, bc_rows), clients=4) as load:
        canary(store, "bc-canary", "--version", "2", "--weight", "10")
        eventually(lambda: "2" in load.versions())
        canary(store, "bc-canary", "--version", "2", "--weight", "90")
        eventually(lambda: "version 2 answers 90 % of requests from now on" in bc.log())
        canary(store, "bc-canary", "--stop")
        eventually(lambda: canary_active(bc) == 0)
        stopped = [len(replies) for replies in load.replies]  # each client's count at the stop
        eventually(lambda: sum(len(replies) for replies in load.replies) > sum(stopped) + 100)
    assert load.errors == []
    replies = [reply for client in load.replies for reply in client]
    assert {reply.status for reply in replies} == {200}
    assert load.versions() == {"1", "2"}
    after = [r for client, n in zip(load.replies, stopped, strict=True) for r in client[n + 1 :]]
    assert len(after) >= 96 and answered_by(after) == {"1": len(after)}  # all from the champion


def test_promoting_the_canary_graduates_it_without_a_failed_request(
    bc: Server, store: Store, bc_rows: list[list[float]]
) -> None:
    """What `make promote VERSION=2` does to the aliases (tests/promote checks that it does)."""
    canary(store, "bc-canary", "--version", "2", "--weight", "50")
    reload(bc)
    with Load(lambda: predict(bc, bc_rows), clients=2) as load:
        with using(store.uri):
            MlflowClient().set_registered_model_alias("bc-canary", "champion", "2")
        canary(store, "bc-canary", "--stop")
        reload(bc)
        settled = sum(len(replies) for replies in load.replies)
        eventually(lambda: sum(len(replies) for replies in load.replies) > settled + 50)
    assert {r.status for client in load.replies for r in client} == {200}
    assert answered_by(many(bc, bc_rows, 100)) == {"2": 100}
    assert canary_active(bc) == 0
    with using(store.uri):
        MlflowClient().set_registered_model_alias("bc-canary", "champion", "1")
    reload(bc)


def shadow_rows(server: Server) -> dict[str, float]:
    rows = samples(server, "mlops_shadow_rows_total")
    return {s.labels["result"]: s.value for s in rows if s.labels["version"] == "2"}


def requests_of(server: Server, version: str, result: str) -> float:
    found = samples(server, "mlops_model_requests_total")
    wanted = {"version": version, "result": result}
    return sum(s.value for s in found if s.labels == wanted)


def test_shadow_mode_answers_from_the_champion_and_compares_the_canary(
    bc: Server, store: Store, bc_rows: list[list[float]], bc_columns: list[str]
) -> None:
    canary(store, "bc-canary", "--version", "2", "--weight", "100", "--mode", "shadow")
    reload(bc)
    copies = requests_of(bc, "2", "ok")
    replies = [bc.post("/invocations", {"instances": bc_rows[i : i + 2]}) for i in range(0, 100, 2)]
    assert answered_by(replies) == {"1": 50}
    frame = pd.DataFrame(bc_rows[:100], columns=bc_columns)
    with using(store.uri):
        v1, v2 = (mlflow.pyfunc.load_model(f"models:/bc-canary/{v}") for v in (1, 2))
    differ = int((v1.predict(frame) != v2.predict(frame)).sum())
    assert differ > 0  # the two versions are told apart
    eventually(lambda: shadow_rows(bc) == {"agree": 100 - differ, "disagree": differ})
    assert requests_of(bc, "2", "ok") == copies + 50
    (latency,) = [s for s in samples(bc, "mlops_shadow_duration_seconds_count")]
    assert latency.value == 50 and latency.labels == {"version": "2"}


@pytest.fixture(scope="module")
def generic(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """gen-canary: v1 a model that answers every row, v2 the generic model (fails on x = -999)."""
    root = tmp_path_factory.mktemp("gen-canary")
    frame = generic_frame()
    with using(store.uri):
        uri = log_from_code(root, "safe", SAFE_MODEL, frame, (frame["x"] * 2).to_numpy(), True)
        register(uri, "gen-canary", "champion", {})
        client = MlflowClient()
        client.create_model_version("gen-canary", client.get_model_version("generic", "1").source)
    server = start_server(
        store.uri,
        "models:/gen-canary@champion",
        root,
        env={"MLOPS_ADMIN_TOKEN": "admin-secret"},
    )
    yield server
    server.stop()


def test_a_canary_failing_more_than_the_champion_is_taken_out_of_rotation(
    generic: Server, store: Store
) -> None:
    canary(store, "gen-canary", "--version", "2", "--weight", "50")
    reload(generic)
    poison = [{**RECORDS_GENERIC[0], "x": -999.0}]
    replies = [generic.post("/invocations", {"dataframe_records": poison}) for _ in range(100)]
    statuses = Counter((r.status, r.headers.get("x-model-version")) for r in replies)
    # The canary's 11th failure (11 of a 200-answer window: above 5 points) takes it out.
    assert statuses[(500, None)] == 11, statuses
    assert statuses[(200, "1")] == 89, statuses
    assert canary_active(generic) == 0
    line = "canary version 2 out of rotation: 5.5 % of its last 200 answers failed"
    assert f"{line}, the champion's 0.0 %" in generic.log()
    replies = [
        generic.post("/invocations", {"dataframe_records": RECORDS_GENERIC}) for _ in range(50)
    ]
    assert answered_by(replies) == {"1": 50}


def test_errors_the_champion_shares_keep_the_canary() -> None:
    champion, ours = object(), object()
    judged = Canary(ours, CanaryTarget("2", 50.0), window=200, max_excess=0.05)  # type: ignore[arg-type]
    for _ in range(30):  # both sides fail alike: the canary is not worse
        assert not judged.record(champion, ok=False)  # type: ignore[arg-type]
        assert not judged.record(ours, ok=False)  # type: ignore[arg-type]
    assert judged.active
    assert judged.error_ratios() == (30 / 200, 1.0)
