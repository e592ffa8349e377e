"""The batch-score component: one Job scoring object-store data with the champion."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import Obj, container, env_of, find, pod_of

pytestmark = pytest.mark.k8s


@pytest.fixture
def objs(built: dict[str, list[Obj]]) -> list[Obj]:
    return built["prod+batch-score"]


def test_the_job_scores_input_into_output_from_its_config_map(objs: list[Obj]) -> None:
    score = container(pod_of(objs, "Job/batch-score"), "score")
    command = " ".join(score["command"] + score["args"])
    assert 'scripts/score.py "$INPUT" "$OUTPUT" --rejects "$REJECTS"' in command
    env = env_of(score, objs)
    for name in ("INPUT", "OUTPUT", "REJECTS"):
        assert env[name].startswith("s3://"), name
    assert env["MODEL_URI"] == "", "empty: the champion, as scripts/score.py resolves it"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI"} <= set(env)


def test_the_job_may_reach_the_tracking_server_and_the_object_store(objs: list[Obj]) -> None:
    labels = pod_of(objs, "Job/batch-score").labels
    assert labels["mlops/tracking-client"] == labels["mlops/object-store-client"] == "true"


def test_bad_input_fails_the_job_without_retrying(objs: list[Obj]) -> None:
    rules = find(objs, "Job", "batch-score")["spec"]["podFailurePolicy"]["rules"]
    (fail,) = [rule for rule in rules if rule["action"] == "FailJob"]
    assert fail["onExitCodes"] == {"containerName": "score", "operator": "In", "values": [1]}
