"""A pyfunc model from outside our pipeline: exact dtypes, params, token, budget, overload."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.serving.conftest import RECORDS_GENERIC as RECORDS
from tests.serving.server import Reply, Server

pytestmark = pytest.mark.serving


def test_generic_model_predicts_through_pyfunc_with_its_own_dtypes(generic_server: Server) -> None:
    reply = generic_server.post("/invocations", {"dataframe_records": RECORDS})
    assert reply.status == 200, reply.body
    # x * 2 + n, plus len(label) where flag: 0.5*2+1+1, 1.5*2+2, 2.5*2+3+3, 3.5*2+4
    assert reply.json()["predictions"] == [3.0, 5.0, 11.0, 11.0]


def test_params_reach_a_generic_model(generic_server: Server) -> None:
    payload = {"dataframe_records": RECORDS[:1], "params": {"scale": 10.0}}
    assert generic_server.post("/invocations", payload).json()["predictions"] == [30.0]


def test_probabilities_are_refused_for_a_model_without_them(generic_server: Server) -> None:
    payload = {"dataframe_records": RECORDS[:1], "params": {"probabilities": True}}
    reply = generic_server.post("/invocations", payload)
    assert reply.status == 400
    assert "probabilities" in reply.json()["message"]


def test_a_model_that_raises_gets_500_without_its_error_and_keeps_serving(
    generic_server: Server,
) -> None:
    record = {**RECORDS[0], "x": -999.0}
    reply = generic_server.post("/invocations", {"dataframe_records": [record]})
    assert reply.status == 500
    assert reply.json() == {
        "error_code": "INTERNAL_ERROR",
        "message": "the model failed to predict these rows",
    }
    assert generic_server.post("/invocations", {"dataframe_records": RECORDS}).status == 200


def test_string_in_a_long_column_is_refused(generic_server: Server) -> None:
    record = {**RECORDS[0], "n": "3"}
    reply = generic_server.post("/invocations", {"dataframe_records": [record]})
    assert reply.json()["message"] == "column 'n', row 0: expected a number, got a string"


def test_predictions_need_the_bearer_token_when_one_is_set(generic_server: Server) -> None:
    body = b'{"dataframe_records": []}'
    json_type = {"Content-Type": "application/json"}
    missing = generic_server.request("POST", "/invocations", body, json_type)
    assert missing.status == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = generic_server.request(
        "POST", "/invocations", body, {**json_type, "Authorization": "Bearer predict-secreT"}
    )
    assert wrong.status == 401
    v2 = generic_server.request("GET", "/v2/models/generic")
    assert v2.status == 401


def test_probes_and_metrics_need_no_token(generic_server: Server) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/ping", "/metrics"):
        assert generic_server.request("GET", path).status == 200, path


def test_admin_endpoints_are_off_without_an_admin_token(generic_server: Server) -> None:
    reply = generic_server.request("POST", "/admin/reload")
    assert reply.status == 403
    assert "MLOPS_ADMIN_TOKEN" in reply.json()["error"]


def test_request_over_its_time_budget_gets_504(generic_server: Server) -> None:
    payload = {"dataframe_records": RECORDS[:1], "params": {"sleep_s": 1.5}}
    reply = generic_server.post("/invocations", payload)
    assert reply.status == 504
    assert reply.json()["error_code"] == "DEADLINE_EXCEEDED"
    generic_server.wait_for("/v2/health/ready")


def test_over_the_queue_depth_requests_get_503_with_retry_after(generic_server: Server) -> None:
    payload = {"dataframe_records": RECORDS[:1], "params": {"sleep_s": 0.4}}
    with ThreadPoolExecutor(12) as pool:
        pending = [pool.submit(generic_server.post, "/invocations", payload) for _ in range(12)]
        time.sleep(0.2)  # queue full now: probes and scrapes are outside the limit
        for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
            assert generic_server.request("GET", path).status == 200, path
        replies: list[Reply] = [future.result() for future in pending]
    statuses = sorted(reply.status for reply in replies)
    assert set(statuses) == {200, 503}, statuses
    refused = [reply for reply in replies if reply.status == 503]
    assert all(reply.headers["retry-after"] == "1" for reply in refused)
    assert "queue limit" in refused[0].json()["message"]
