"""Reading `data.source` from folders and globs of partitions, S3 and HTTP: the table, the
snapshot and its digest, and one clear error, with nothing written, when the source fails."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import moto.settings
import pandas as pd
import pytest

from mlops.config import DataConfig
from mlops.data import RawData, listing_digest, load_raw
from mlops.errors import ConfigError, DataError
from tests.conftest import mixed_frame
from tests.data.conftest import Bucket

FRAME = mixed_frame(rows=90)
CHUNKS = [FRAME.iloc[:30], FRAME.iloc[30:60], FRAME.iloc[60:]]


def data_config(source: str) -> DataConfig:
    return DataConfig(source=source, target="churned", task="classification", prepared_dir=Path())


def read(source: str, raw_dir: Path) -> RawData:
    return load_raw(data_config(source), raw_dir)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame, tmp_path: Path) -> bytes:
    path = tmp_path / "scratch.parquet"
    frame.to_parquet(path, index=False)
    return path.read_bytes()


def write_parts(folder: Path, contents: dict[str, bytes]) -> None:
    for name, data in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


def assert_frames_equal(found: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(found, expected.reset_index(drop=True), check_dtype=False)


# Out of name order on purpose, with the markers and hidden files that writers leave beside data.
PARTS = {
    "part-2.csv": csv_bytes(CHUNKS[2]),
    "part-0.csv": csv_bytes(CHUNKS[0]),
    "part-1.csv": csv_bytes(CHUNKS[1]),
    "_SUCCESS": b"",
    ".part-0.csv.crc": b"junk",
    "README.txt": b"not data",
}


def test_folder_of_partitions_reads_as_one_table_in_name_order(tmp_path: Path) -> None:
    write_parts(tmp_path / "in", PARTS)
    raw = read(str(tmp_path / "in"), tmp_path / "raw")
    assert_frames_equal(raw.frame, FRAME)
    assert sorted(p.name for p in raw.snapshot.iterdir()) == [
        "part-0.csv",
        "part-1.csv",
        "part-2.csv",
    ]
    assert raw.snapshot.name == f"{raw.digest[:16]}-in"
    assert all((raw.snapshot / n).read_bytes() == PARTS[n] for n in ("part-0.csv", "part-2.csv"))
    assert not (raw.snapshot / "part-0.csv").stat().st_mode & 0o222  # read-only copies
    names = [f"part-{i}.csv" for i in range(3)]
    assert raw.digest == listing_digest([(n, tmp_path / "in" / n) for n in names])


def test_snapshot_folder_reads_back_to_the_same_table_and_digest(tmp_path: Path) -> None:
    write_parts(tmp_path / "in", PARTS)
    first = read(str(tmp_path / "in"), tmp_path / "raw")
    again = read(str(first.snapshot), tmp_path / "raw")
    assert again.digest == first.digest
    assert_frames_equal(again.frame, first.frame)


def test_renaming_a_partition_changes_the_digest(tmp_path: Path) -> None:
    write_parts(tmp_path / "a", {"x-0.csv": csv_bytes(CHUNKS[0]), "x-1.csv": csv_bytes(CHUNKS[1])})
    write_parts(tmp_path / "b", {"x-1.csv": csv_bytes(CHUNKS[0]), "x-0.csv": csv_bytes(CHUNKS[1])})
    a, b = (read(str(tmp_path / n), tmp_path / "raw") for n in ("a", "b"))
    assert a.digest != b.digest
    assert_frames_equal(b.frame, pd.concat([CHUNKS[1], CHUNKS[0]]))


def test_glob_of_parquet_partitions_in_subfolders(tmp_path: Path) -> None:
    parts = {
        f"day={d}/data.parquet": parquet_bytes(c, tmp_path)
        for d, c in zip("123", CHUNKS, strict=True)
    }
    write_parts(tmp_path / "in", {**parts, "day=4/notes.csv": csv_bytes(CHUNKS[0])})
    raw = read(str(tmp_path / "in" / "day=*" / "*.parquet"), tmp_path / "raw")
    assert_frames_equal(raw.frame, FRAME)
    assert (raw.snapshot / "day=1" / "data.parquet").read_bytes() == parts["day=1/data.parquet"]


def test_partitions_with_other_columns_fail_naming_the_partition(tmp_path: Path) -> None:
    write_parts(tmp_path / "in", {"a.csv": csv_bytes(CHUNKS[0]), "b.csv": b"x,y\n1,2\n"})
    with pytest.raises(DataError, match=r"b\.csv: its columns differ from .*a\.csv"):
        read(str(tmp_path / "in"), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("pattern", ["in", "in/*.parquet"], ids=["folder", "glob"])
def test_no_data_files_is_an_error_naming_the_source(tmp_path: Path, pattern: str) -> None:
    write_parts(tmp_path / "in", {"_SUCCESS": b"", "notes.txt": b"x"})
    source = str(tmp_path / pattern)
    with pytest.raises(DataError, match=re.escape(f"{source}: no .csv or .parquet files")):
        read(source, tmp_path / "raw")


def test_s3_object_is_read_and_snapshotted_byte_for_byte(bucket: Bucket, tmp_path: Path) -> None:
    data = csv_bytes(FRAME)
    raw = read(bucket.put("in/customers.csv", data), tmp_path / "raw")
    assert_frames_equal(raw.frame, FRAME)
    assert raw.snapshot.read_bytes() == data
    assert raw.digest == hashlib.sha256(data).hexdigest()
    assert raw.snapshot.name == f"{raw.digest[:16]}-customers.csv"


def test_s3_prefix_and_glob_read_like_the_same_local_folder(bucket: Bucket, tmp_path: Path) -> None:
    for name, data in PARTS.items():
        bucket.put(f"in/{name}", data)
    write_parts(tmp_path / "in", PARTS)
    local = read(str(tmp_path / "in"), tmp_path / "raw")
    prefix = read(f"s3://{bucket.name}/in/", tmp_path / "raw")
    matched = read(f"s3://{bucket.name}/in/part-*.csv", tmp_path / "raw")
    assert prefix.digest == matched.digest == local.digest
    assert prefix.snapshot == local.snapshot
    assert_frames_equal(prefix.frame, FRAME)


def test_missing_s3_key_is_an_error_naming_it(bucket: Bucket, tmp_path: Path) -> None:
    source = f"s3://{bucket.name}/nothing/here.csv"
    with pytest.raises(DataError, match=re.escape(f"data source {source} does not exist")):
        read(source, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_denied_s3_access_is_an_error_naming_the_source(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = bucket.put("in/customers.csv", csv_bytes(FRAME))
    # From now on the store checks credentials, and these ones it has never issued.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(
        DataError, match=re.escape(f"data source {source} cannot be read: ") + ".*ACCESS_DENIED"
    ):
        read(source, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_unreachable_s3_endpoint_is_an_error_naming_the_source(
    bucket: Bucket, tmp_path: Path, unused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{unused_port}")
    source = f"s3://{bucket.name}/in/customers.csv"
    with pytest.raises(
        DataError, match=re.escape(f"data source {source} cannot be read: ") + ".*connect"
    ):
        read(source, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_http_file_is_read_and_snapshotted(web_root: tuple[Path, str], tmp_path: Path) -> None:
    root, url = web_root
    data = parquet_bytes(FRAME, tmp_path)
    (root / "customers.parquet").write_bytes(data)
    raw = read(f"{url}/customers.parquet", tmp_path / "raw")
    assert_frames_equal(raw.frame, FRAME)
    assert raw.snapshot.read_bytes() == data
    assert raw.digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("path", "message"),
    [("/missing.csv", "HTTP 404"), ("/denied/customers.csv", "HTTP 403")],
    ids=["missing", "denied"],
)
def test_http_error_status_is_an_error_naming_the_url(
    web_root: tuple[Path, str], tmp_path: Path, path: str, message: str
) -> None:
    source = f"{web_root[1]}{path}"
    with pytest.raises(DataError, match=re.escape(f"data source {source}: {message}")):
        read(source, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_unreachable_http_server_is_an_error_naming_the_url(
    tmp_path: Path, unused_port: int
) -> None:
    source = f"http://127.0.0.1:{unused_port}/customers.csv"
    with pytest.raises(DataError, match=re.escape(f"data source {source} cannot be reached")):
        read(source, tmp_path / "raw")


def test_unknown_scheme_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("data.source 'ftp://host/x.csv'")):
        read("ftp://host/x.csv", tmp_path / "raw")
