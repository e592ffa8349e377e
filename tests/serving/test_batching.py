"""Concurrent requests are coalesced into one predict call, and each caller gets its own rows."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.server import Reply, Server

pytestmark = [pytest.mark.serving, pytest.mark.slow]


def batch_counts(server: Server) -> tuple[float, float]:
    """(predict calls, requests predicted) so far, from the server's own histogram."""
    text = server.get("/metrics").body.decode()
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "mlops_batch_size_requests"
    )
    values = {s.name: s.value for s in family.samples}
    return values["mlops_batch_size_requests_count"], values["mlops_batch_size_requests_sum"]


def test_concurrent_distinct_requests_each_get_their_own_rows(
    linear_server: Server, bc_estimator: Any, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    """240 requests from 32 clients: 1 to 4 distinct rows each, half asking for probabilities,
    every 7th invalid. Valid ones must match the model row for row; invalid ones get 400."""

    def send(i: int) -> tuple[int, list[list[Any]], bool, Reply]:
        start = (i * 7) % (len(bc_rows) - 4)
        rows: list[list[Any]] = [list(row) for row in bc_rows[start : start + 1 + i % 4]]
        invalid = i % 7 == 3
        if invalid:
            rows[-1][i % 30] = None
        payload: dict[str, Any] = {"dataframe_split": {"columns": bc_columns, "data": rows}}
        if i % 2:
            payload["params"] = {"probabilities": True}
        return i, rows, invalid, linear_server.post("/invocations", payload)

    calls_before, requests_before = batch_counts(linear_server)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(send, range(240)))
    calls_after, requests_after = batch_counts(linear_server)

    for i, rows, invalid, reply in results:
        if invalid:
            assert reply.status == 400, (i, reply.body)
            assert "missing value" in reply.json()["message"]
            continue
        assert reply.status == 200, (i, reply.body)
        body = reply.json()
        frame = pd.DataFrame(rows, columns=bc_columns)
        assert body["predictions"] == bc_estimator.predict(frame).tolist(), i
        if i % 2:
            np.testing.assert_allclose(
                body["probabilities"], bc_estimator.predict_proba(frame), rtol=1e-9
            )
        else:
            assert "probabilities" not in body
    answered = requests_after - requests_before
    assert answered == sum(1 for _, _, invalid, _ in results if not invalid)
    assert answered / (calls_after - calls_before) > 1.5, "requests were not coalesced"


def test_one_large_request_is_one_predict_call(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    calls_before, _ = batch_counts(linear_server)
    reply = linear_server.post("/invocations", {"instances": bc_rows[:400]})
    assert len(reply.json()["predictions"]) == 400
    calls_after, _ = batch_counts(linear_server)
    assert calls_after - calls_before == 1


def test_lone_requests_are_one_predict_call_each_and_counted(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    calls_before, requests_before = batch_counts(linear_server)
    for size in (1, 3, 5):
        reply = linear_server.post("/invocations", {"instances": bc_rows[:size]})
        assert len(reply.json()["predictions"]) == size
    calls_after, requests_after = batch_counts(linear_server)
    assert (calls_after - calls_before, requests_after - requests_before) == (3, 3)


def test_json_body_stays_small_for_one_row(
    linear_server: Server, bc_rows: list[list[float]]
) -> None:
    reply = linear_server.post("/invocations", {"instances": bc_rows[:1]})
    assert json.loads(reply.body) == {"predictions": [0], "model_version": "1"}
