"""Where raw data comes from: a local file, a folder or glob of partitions, S3, or an HTTP(S) URL.

`fetch(source)` yields the source's files on local disk, in name order: local files as they are,
remote ones downloaded into a temporary folder removed afterwards. Reading, the snapshot and the
digest (mlops/data.py) are then the same code for every kind of source, and the network is read
once. `locate(source)` is for readers that stream (batch scoring, mlops/score.py): S3 objects are
named where they are, for a PyArrow dataset to read in pieces; only an HTTP(S) file is downloaded.
The forms a source takes: README.md, "Use your own data". In a folder, prefix or glob, names
starting with `.` or `_` (`_SUCCESS`, `.crc`) are skipped, as Spark and PyArrow datasets do.
"""

from __future__ import annotations

import fnmatch
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pandas as pd
import pyarrow.fs as pafs

from mlops.errors import ConfigError, DataError

SUFFIXES = (".csv", ".parquet", ".pq")
REMOTE_SCHEMES = ("s3", "http", "https")
# A stalled server fails the step instead of hanging it (urllib applies it to connect and reads).
HTTP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Part:
    path: Path  # on local disk: the file itself, or its download
    name: str  # its path below the source's folder, prefix or glob root; the snapshot keeps it
    origin: str  # where it came from, as the user would name it in a message


@dataclass(frozen=True)
class Parts:
    title: str  # the snapshot's name: the file's, or the folder's / prefix's
    parts: tuple[Part, ...]  # in name order
    partitioned: bool  # a folder, prefix or glob (even of one file), not a single file


@dataclass(frozen=True)
class Located:
    filesystem: pafs.FileSystem
    paths: tuple[str, ...]  # the parts as `filesystem` names them, in name order
    parts: Parts


@contextmanager
def fetch(source: str) -> Iterator[Parts]:
    """The files of `source` on local disk; a `DataError` naming it if they cannot be had."""
    scheme = _scheme(source)
    if not scheme:
        yield _local(source)
        return
    with tempfile.TemporaryDirectory(prefix="mlops-fetch-") as staging:
        download = _download_s3 if scheme == "s3" else _download_http
        yield download(source, Path(staging))


@contextmanager
def locate(source: str) -> Iterator[Located]:
    """The files of `source` where they can be read in pieces: local and S3 files in place, an
    HTTP(S) file downloaded to a temporary folder first."""
    if _scheme(source) != "s3":
        with fetch(source) as parts:
            paths = tuple(str(part.path) for part in parts.parts)
            yield Located(pafs.LocalFileSystem(), paths, parts)
        return
    filesystem, path = s3_filesystem(source)
    with _s3_errors(source):
        parts = _s3_listing(source, filesystem, path.rstrip("/"), Path())
    keys = tuple(part.origin.removeprefix("s3://") for part in parts.parts)
    yield Located(filesystem, keys, parts)


def _scheme(source: str) -> str:
    scheme = urlsplit(source).scheme if "://" in source else ""
    if scheme and scheme not in REMOTE_SCHEMES:
        raise ConfigError(
            f"data.source {source!r}: expected sklearn:NAME, a .csv / .parquet file, folder or "
            f"glob, s3://bucket/key or an http(s):// URL"
        )
    return scheme


def read_parts(parts: Parts) -> pd.DataFrame:
    """All parts as one table, in name order; they must have the same columns."""
    frames = [read_table(part.path, part.origin) for part in parts.parts]
    first = list(frames[0].columns)
    for part, frame in zip(parts.parts, frames, strict=True):
        differing = set(frame.columns) ^ set(first)
        if differing:
            raise DataError(
                f"data file {part.origin}: its columns differ from {parts.parts[0].origin}'s "
                f"(in one only: {sorted(differing)})"
            )
    if len(frames) == 1:
        return frames[0]
    return pd.concat([frame[first] for frame in frames], ignore_index=True)


def read_table(path: Path, origin: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; any problem becomes a `DataError` naming `origin`."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"data file {origin}: expected a .csv or .parquet file, got {suffix!r}")
    try:
        return pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"data file {origin} cannot be parsed as CSV: {first_line(err)}") from None
    except (OSError, ValueError) as err:  # pyarrow's errors derive from these
        raise DataError(f"data file {origin} cannot be read: {first_line(err)}") from None


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _local(source: str) -> Parts:
    path = Path(source)
    if path.is_file():  # before the glob test: `data[1].csv` may be a real name
        return Parts(path.name, (Part(path, path.name, str(path)),), partitioned=False)
    if path.is_dir():
        root, files = path, list(path.rglob("*"))
    elif _is_glob(source):
        fixed, pattern = _split_glob(source)
        root, files = Path(fixed), list(Path(fixed).glob(pattern))
    else:
        raise DataError(f"data file {path} does not exist")
    found = [Part(f, f.relative_to(root).as_posix(), str(f)) for f in files if f.is_file()]
    return _partitions(source, root.name, found)


def _download_s3(source: str, staging: Path) -> Parts:
    filesystem, path = s3_filesystem(source)
    with _s3_errors(source):
        parts = _s3_listing(source, filesystem, path.rstrip("/"), staging)
        for part in parts.parts:
            part.path.parent.mkdir(parents=True, exist_ok=True)
            key = part.origin.removeprefix("s3://")  # the origin is s3://<bucket>/<key>
            pafs.copy_files(key, str(part.path), source_filesystem=filesystem)
    return parts


@contextmanager
def _s3_errors(source: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"data source {source} does not exist") from None
    except OSError as err:  # denied, unreachable, ...: PyArrow says which in its first line
        raise DataError(f"data source {source} cannot be read: {first_line(err)}") from None


def s3_filesystem(source: str) -> tuple[pafs.FileSystem, str]:
    """PyArrow's S3 filesystem for `source` (s3://bucket/key), and the path it names there."""
    # PyArrow's `S3FileSystem(...)` does not read AWS_ENDPOINT_URL (PyArrow 25 reads it in
    # `from_uri` only), so the endpoint is passed explicitly; without one, the bucket's region is
    # looked up, as `from_uri` does. Delayed open: a file written smaller than one part is sent
    # with one PUT, not a multipart upload (which some S3-compatible stores answer oddly).
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    path = source.removeprefix("s3://")
    try:
        if endpoint:
            return pafs.S3FileSystem(endpoint_override=endpoint, allow_delayed_open=True), path
        region = pafs.resolve_s3_region(path.split("/", 1)[0])
        return pafs.S3FileSystem(region=region, allow_delayed_open=True), path
    except (OSError, ValueError) as err:
        raise DataError(f"data source {source} cannot be opened: {first_line(err)}") from None


def _s3_listing(source: str, filesystem: pafs.FileSystem, path: str, staging: Path) -> Parts:
    """The object `path`, or the objects under it or matching it, to be downloaded to `staging`."""
    if _is_glob(path):
        root = _split_glob(path)[0]
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        infos = [i for i in infos if fnmatch.fnmatchcase(i.path, path)]
    else:
        root, info = path, filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(path)
        if info.type == pafs.FileType.File:
            name = PurePosixPath(path).name
            part = Part(staging / name, name, f"s3://{path}")
            return Parts(name, (part,), partitioned=False)
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    found = []
    for info in infos:
        name = PurePosixPath(info.path).relative_to(root).as_posix()
        if info.type == pafs.FileType.File and ".." not in PurePosixPath(name).parts:
            found.append(Part(staging / name, name, f"s3://{info.path}"))
    return _partitions(source, PurePosixPath(root).name, found)


def _download_http(source: str, staging: Path) -> Parts:
    name = PurePosixPath(urlsplit(source).path).name or "download"
    target = staging / name
    request = urllib.request.Request(source, headers={"User-Agent": "mlops-prepare"})
    try:
        with (
            urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response,
            target.open("wb") as out,
        ):
            shutil.copyfileobj(response, out, 1 << 20)
    except urllib.error.HTTPError as err:
        raise DataError(f"data source {source}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise DataError(f"data source {source} cannot be reached: {err.reason}") from None
    except (OSError, http.client.HTTPException) as err:  # timeouts, dropped connections
        raise DataError(f"data source {source} cannot be read: {first_line(err)}") from None
    return Parts(name, (Part(target, name, source),), partitioned=False)


def _partitions(source: str, title: str, found: list[Part]) -> Parts:
    """The data files among `found`, in name order; hidden and `_` files (markers) left out."""
    kept = sorted((p for p in found if _is_data_file(p.name)), key=lambda p: p.name)
    if not kept:
        raise DataError(f"data source {source}: no .csv or .parquet files found")
    return Parts(title or "partitions", tuple(kept), partitioned=True)


def _is_data_file(name: str) -> bool:
    hidden = any(part.startswith((".", "_")) for part in PurePosixPath(name).parts)
    return not hidden and PurePosixPath(name).suffix.lower() in SUFFIXES


def _is_glob(path: str) -> bool:
    return any(char in path for char in "*?[")


def _split_glob(pattern: str) -> tuple[str, str]:
    """The folder before the first wildcard, and the rest: `d/2*/x.csv` -> `d`, `2*/x.csv`."""
    parts = PurePosixPath(pattern).parts
    fixed = list(takewhile(lambda part: not _is_glob(part), parts))
    return str(PurePosixPath(*fixed)), str(PurePosixPath(*parts[len(fixed) :]))
