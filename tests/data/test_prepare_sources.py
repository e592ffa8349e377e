"""prepare on the new sources: what it records, and that a failing source leaves nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import moto.settings
import pytest

from mlops.prepare import prepare
from tests.conftest import ConfigFactory, csv_overrides, mixed_frame
from tests.data.conftest import Bucket
from tests.e2e.helpers import config_args, run_main, run_process

pytestmark = pytest.mark.e2e

FRAME = mixed_frame()


def put_partitions(bucket: Bucket) -> str:
    for i, start in enumerate(range(0, len(FRAME), 80)):
        bucket.put(f"in/part-{i}.csv", FRAME.iloc[start : start + 80].to_csv(index=False).encode())
    return f"s3://{bucket.name}/in/"


def test_prepare_from_s3_partitions_records_snapshot_and_digests(
    mlflow_store: str, bucket: Bucket, make_config: ConfigFactory, tmp_path: Path
) -> None:
    source = put_partitions(bucket)
    prepared = prepare(make_config(*csv_overrides(Path(source)), f"data.source={source}"))
    manifest = prepared.manifest
    snapshot = Path(manifest["raw_snapshot"])
    assert manifest["source"] == source
    assert snapshot.parent == tmp_path / "raw"
    assert snapshot.name == f"{manifest['raw_digest'][:16]}-in"
    assert sorted(p.name for p in snapshot.iterdir()) == ["part-0.csv", "part-1.csv", "part-2.csv"]
    assert sum(manifest["rows"].values()) == len(FRAME)
    assert len(manifest["test_digest"]) == 64


def missing_s3_key(bucket: Bucket, url: str, port: int) -> str:
    return f"s3://{bucket.name}/nothing.csv"


def denied_s3_key(bucket: Bucket, url: str, port: int) -> str:
    source = bucket.put("in/customers.csv", FRAME.to_csv(index=False).encode())
    moto.settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # undone by the test's monkeypatch
    return source


def http_not_found(bucket: Bucket, url: str, port: int) -> str:
    return f"{url}/customers.csv"


def unreachable_http(bucket: Bucket, url: str, port: int) -> str:
    return f"http://127.0.0.1:{port}/customers.csv"


@pytest.mark.parametrize(
    "make_source",
    [missing_s3_key, denied_s3_key, http_not_found, unreachable_http],
    ids=["s3-missing", "s3-denied", "http-404", "http-unreachable"],
)
def test_failing_source_leaves_no_snapshot_no_prepared_data_and_no_run(
    mlflow_store: str,
    bucket: Bucket,
    web_root: tuple[Path, str],
    unused_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_source: Callable[[Bucket, str, int], str],
) -> None:
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    source = make_source(bucket, web_root[1], unused_port)
    args = config_args(tmp_path, *csv_overrides(Path()), f"data.source={source}")
    assert run_main("prepare.py", *args) == 1
    assert not (tmp_path / "raw").exists()
    assert not (tmp_path / "prepared").exists()
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_failing_source_is_one_line_naming_it(
    mlflow_store: str, bucket: Bucket, tmp_path: Path
) -> None:
    source = f"s3://{bucket.name}/missing/customers.csv"
    result = run_process("prepare.py", *config_args(tmp_path, f"data.source={source}"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert f"data source {source} does not exist" in errors[0]
