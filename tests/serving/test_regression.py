"""A regressor from our pipeline: predictions match the model, values land in the histogram."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_diabetes

from tests.serving.conftest import Store, using
from tests.serving.server import Server

pytestmark = pytest.mark.serving


def test_regressor_predictions_match_the_model(regression_server: Server, store: Store) -> None:
    import mlflow

    rows = load_diabetes(as_frame=True).data.head(7)
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    reply = regression_server.post("/invocations", payload)
    assert reply.status == 200, reply.body
    with using(store.uri):
        model = mlflow.pyfunc.load_model("models:/diabetes@champion")
    np.testing.assert_allclose(reply.json()["predictions"], model.predict(rows), rtol=1e-9)


def test_regressor_has_no_probabilities_and_counts_values(regression_server: Server) -> None:
    row = load_diabetes(as_frame=True).data.head(1).to_numpy().tolist()
    refused = regression_server.post(
        "/invocations", {"instances": row, "params": {"probabilities": True}}
    )
    assert refused.status == 400
    metadata = regression_server.get("/v2/models/diabetes").json()
    assert [o["name"] for o in metadata["outputs"]] == ["predictions"]
    assert metadata["outputs"][0]["datatype"] == "FP64"
    text = regression_server.get("/metrics").body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    count = next(
        s.value for s in families["mlops_prediction_value"].samples if s.name.endswith("_count")
    )
    assert count >= 1
