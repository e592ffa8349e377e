"""Batch scoring end to end: `scripts/score.py` on real files, a real MLflow store, S3 and HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from scripts.score import main
from tests.conftest import mixed_frame
from tests.data.conftest import Bucket
from tests.score.conftest import BC_MODEL, MIXED_MODEL, Store, bc_rows
from tests.serving.conftest import using

pytestmark = pytest.mark.e2e

BC_URI = f"models:/{BC_MODEL}@champion"
SMALL_BATCHES = "score.batch_rows=500"  # several batches from a few thousand rows


def run(store: Store, *args: str) -> int:
    with using(store.uri):
        return main([*args, "--set", f"registered_model={BC_MODEL}", "--set", SMALL_BATCHES])


def pyfunc_predictions(store: Store, uri: str, frame: pd.DataFrame) -> np.ndarray:
    with using(store.uri):
        return np.asarray(mlflow.pyfunc.load_model(uri).predict(frame))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_scores_the_champion_as_pyfunc_predicts(score_store: Store, tmp_path: Path) -> None:
    rows = bc_rows(repeats=4)
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "out" / "scored.parquet"
    assert run(score_store, str(tmp_path / "in.parquet"), str(out), "--keep", "id") == 0
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["id", "prediction"]
    np.testing.assert_array_equal(scored["id"], rows["id"])
    expected = pyfunc_predictions(score_store, BC_URI, rows.drop(columns=["id"]))
    np.testing.assert_array_equal(scored["prediction"], expected)


def test_probabilities_are_the_models_own(score_store: Store, tmp_path: Path) -> None:
    rows = bc_rows()
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    out = tmp_path / "scored.parquet"
    assert run(score_store, str(tmp_path / "in.parquet"), str(out), "--probabilities") == 0
    scored = pd.read_parquet(out)
    with using(score_store.uri):
        estimator = mlflow.pyfunc.load_model(BC_URI).get_raw_model()
    expected = estimator.predict_proba(rows.drop(columns=["id"]))
    np.testing.assert_allclose(scored[["probability_0", "probability_1"]], expected, rtol=1e-12)


def test_metadata_names_the_model_and_the_input_digest(score_store: Store, tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    bc_rows().to_parquet(source, index=False)
    out = tmp_path / "scored.parquet"
    assert run(score_store, str(source), str(out)) == 0
    metadata = {k.decode(): v.decode() for k, v in pq.read_schema(out).metadata.items()}
    assert metadata["mlops.model_name"] == BC_MODEL
    assert metadata["mlops.model_version"] == "1"
    assert metadata["mlops.model_uri"] == f"models:/{BC_MODEL}/1"
    assert metadata["mlops.input_digest"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_csv_partitions_with_strings_and_missing_values(score_store: Store, tmp_path: Path) -> None:
    frame = mixed_frame(rows=600, seed=3).drop(columns=["churned"])
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:250].to_csv(folder / "part-0.csv", index=False)
    frame.iloc[250:].to_csv(folder / "part-1.csv", index=False)
    (folder / "_SUCCESS").write_text("")
    out = tmp_path / "scored.parquet"
    uri = f"models:/{MIXED_MODEL}@champion"
    assert run(score_store, str(folder), str(out), "--model-uri", uri) == 0
    expected = pyfunc_predictions(score_store, uri, frame)
    np.testing.assert_array_equal(pd.read_parquet(out)["prediction"], expected)


def bad_input(tmp_path: Path, bad_row: int) -> Path:
    rows = bc_rows(repeats=4)
    rows.loc[bad_row, "mean radius"] = np.nan  # never missing in training: the model refuses it
    path = tmp_path / "in" / "bad.parquet"
    path.parent.mkdir()
    rows.to_parquet(path, index=False)
    return path


def test_an_invalid_row_stops_the_job_and_leaves_nothing(
    score_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = bad_input(tmp_path, bad_row=1234)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run(score_store, str(source), str(out_dir / "scored.parquet")) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(f"{source}: column 'mean radius', row 1234: missing value")
    assert leftovers(out_dir) == []


def test_rejects_go_to_a_side_file_and_the_rest_is_scored(
    score_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = bad_input(tmp_path, bad_row=1234)
    out, rejects = tmp_path / "scored.parquet", tmp_path / "rejects.parquet"
    args = (str(source), str(out), "--keep", "id", "--rejects", str(rejects))
    assert run(score_store, *args) == 0
    printed = capsys.readouterr().out
    assert "scored: 2275 rows" in printed
    assert f"rejected: 1 rows -> {rejects}" in printed
    assert 1234 not in set(pd.read_parquet(out)["id"])
    refused = pd.read_parquet(rejects)
    assert list(refused["id"]) == [1234]
    assert "column 'mean radius', row 1234: missing value" in refused["reason"][0]


def test_no_rejects_still_writes_an_empty_rejects_file(score_store: Store, tmp_path: Path) -> None:
    bc_rows().to_parquet(tmp_path / "in.parquet")
    out, rejects = tmp_path / "out.parquet", tmp_path / "rejects.parquet"
    assert run(score_store, str(tmp_path / "in.parquet"), str(out), "--rejects", str(rejects)) == 0
    empty = pq.read_table(rejects)
    assert empty.num_rows == 0 and empty.schema.names[-1] == "reason"


def test_a_missing_column_stops_even_with_rejects(score_store: Store, tmp_path: Path) -> None:
    bc_rows().drop(columns=["mean radius"]).to_parquet(tmp_path / "in.parquet")
    out, rejects = tmp_path / "out.parquet", tmp_path / "rejects.parquet"
    args = (str(tmp_path / "in.parquet"), str(out), "--rejects", str(rejects))
    assert run(score_store, *args) == 1
    assert leftovers(tmp_path) == ["in.parquet"]


def test_a_keep_column_not_in_the_input_is_an_error(score_store: Store, tmp_path: Path) -> None:
    bc_rows().to_parquet(tmp_path / "in.parquet")
    out = tmp_path / "out.parquet"
    assert run(score_store, str(tmp_path / "in.parquet"), str(out), "--keep", "customer") == 1
    assert not out.exists()


def test_reads_from_s3_and_writes_to_s3(score_store: Store, bucket: Bucket, tmp_path: Path) -> None:
    rows = bc_rows()
    rows.to_parquet(tmp_path / "in.parquet", index=False)
    source = bucket.put("in/part-0.parquet", (tmp_path / "in.parquet").read_bytes())
    target = f"s3://{bucket.name}/scored/out.parquet"
    assert run(score_store, source.rsplit("/", 1)[0] + "/", target, "--keep", "id") == 0
    s3 = pafs.S3FileSystem(endpoint_override=bucket.endpoint)
    listing = s3.get_file_info(pafs.FileSelector(f"{bucket.name}/scored"))
    assert [info.base_name for info in listing] == ["out.parquet"]
    scored = pq.read_table(f"{bucket.name}/scored/out.parquet", filesystem=s3).to_pandas()
    expected = pyfunc_predictions(score_store, BC_URI, rows.drop(columns=["id"]))
    np.testing.assert_array_equal(scored["prediction"], expected)


def test_reads_over_http(score_store: Store, web_root: tuple[Path, str], tmp_path: Path) -> None:
    root, base = web_root
    rows = bc_rows()
    rows.to_csv(root / "rows.csv", index=False)
    out = tmp_path / "scored.parquet"
    assert run(score_store, f"{base}/rows.csv", str(out), "--keep", "id") == 0
    expected = pyfunc_predictions(score_store, BC_URI, rows.drop(columns=["id"]))
    np.testing.assert_array_equal(pd.read_parquet(out)["prediction"], expected)


def test_a_csv_value_that_is_not_a_number_stops_the_job(
    score_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = bc_rows().astype({"mean radius": object})
    rows.loc[7, "mean radius"] = "twelve"
    rows.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out" / "scored.parquet"
    assert run(score_store, str(tmp_path / "in.csv"), str(out)) == 1
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith(f"data file {tmp_path / 'in.csv'} cannot be read: ")
    assert "twelve" in error
    assert not out.parent.exists() or leftovers(out.parent) == []
