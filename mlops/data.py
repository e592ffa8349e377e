"""The data: reading the raw data set, keeping an immutable copy of it, splitting it reproducibly,
and reading back what prepare wrote (`load_prepared`), which every later stage starts from.

The raw input is a data set bundled with scikit-learn (`sklearn:breast_cancer`, `sklearn:diabetes`)
or a user's CSV / Parquet data: a file, a folder or glob of partitions, on local disk, S3 or HTTP(S)
(mlops/sources.py reads them). Column kinds are decided once here: numeric columns become float64,
categorical ones strings, so training, the logged signature and serving agree on types.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from mlops.config import DataConfig
from mlops.errors import DataError
from mlops.sources import Parts, fetch, read_parts

BUNDLED = {"breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes"}
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class RawData:
    frame: pd.DataFrame
    snapshot: Path  # the immutable copy of the raw input
    # sha256 of the snapshot's bytes; for partitions, of their listing (`listing_digest`)
    digest: str


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame

    def named(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


@dataclass(frozen=True)
class FitInputs:
    """What fitting a model family needs: the training and validation (features, target)."""

    train: tuple[pd.DataFrame, pd.Series]
    validation: tuple[pd.DataFrame, pd.Series]
    kinds: dict[str, str]  # feature column -> "numeric" | "categorical"
    task: str
    seed: int


@dataclass(frozen=True)
class PreparedData:
    splits: Splits
    manifest: dict[str, Any]
    profile: dict[str, Any]

    @property
    def digest(self) -> str:
        return str(self.manifest["digest"])

    @property
    def test_digest(self) -> str | None:
        """What prepare recorded for the test split (`frame_digest`); None for older manifests."""
        recorded = self.manifest.get("test_digest")
        return None if recorded is None else str(recorded)

    def xy(self, split: str) -> tuple[pd.DataFrame, pd.Series]:
        frame = self.splits.named()[split]
        target = self.manifest["target"]
        return frame.drop(columns=[target]), frame[target]

    def fit_inputs(self, seed: int) -> FitInputs:
        kinds, task = self.manifest["kinds"], self.manifest["task"]
        return FitInputs(self.xy("train"), self.xy("validation"), kinds, task, seed)


def load_raw(config: DataConfig, snapshot_dir: Path) -> RawData:
    """Read the configured source and keep a read-only copy of its bytes in `snapshot_dir`.

    The source is read in full before anything is written, so a source that cannot be reached or
    read leaves no snapshot behind.
    """
    if config.source.startswith("sklearn:"):
        name = config.source.removeprefix("sklearn:")
        frame = _load_bundled(name, config.target)
        with tempfile.TemporaryDirectory() as staging:
            written = Path(staging) / f"{name}.csv"
            frame.to_csv(written, index=False)
            return RawData(frame, *_snapshot_file(written, snapshot_dir, written.name))
    with fetch(config.source) as parts:
        frame = read_parts(parts)
        if parts.partitioned:
            return RawData(frame, *_snapshot_parts(parts, snapshot_dir))
        return RawData(frame, *_snapshot_file(parts.parts[0].path, snapshot_dir, parts.title))


def coerce_types(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Numeric columns as float64, categorical ones as strings (missing stays missing)."""
    out = frame.copy()
    for column, kind in kinds.items():
        if kind == "numeric":
            out[column] = out[column].astype("float64")
        else:
            values = out[column]
            out[column] = values.where(values.isna(), values.astype(str)).astype(object)
    return out


def split(frame: pd.DataFrame, config: DataConfig, seed: int) -> Splits:
    """Train / validation / test, stratified on the target for classification."""

    def cut(rows: pd.DataFrame, share: float) -> list[pd.DataFrame]:
        stratify = rows[config.target] if config.task == "classification" else None
        return list(train_test_split(rows, test_size=share, random_state=seed, stratify=stratify))

    rest, test = cut(frame, config.test_fraction)
    train, validation = cut(rest, config.validation_fraction / (1.0 - config.test_fraction))
    return Splits(train=train, validation=validation, test=test)


def splits_digest(splits: Splits) -> str:
    """One digest for the exact rows of all three splits: the data a model was judged on."""
    digest = hashlib.sha256()
    for name, frame in splits.named().items():
        digest.update(name.encode())
        digest.update(_row_hashes(frame))
    return digest.hexdigest()


def frame_digest(frame: pd.DataFrame) -> str:
    """The exact rows of one split (index and values): the test rows models are scored on."""
    return hashlib.sha256(_row_hashes(frame)).hexdigest()


def _row_hashes(frame: pd.DataFrame) -> bytes:
    # By value, not dtype: a split read back from Parquet hashes as the one that was written.
    hashes: bytes = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    return hashes


def write_prepared(prepared: PreparedData, directory: Path) -> None:
    for name, frame in prepared.splits.named().items():
        frame.to_parquet(directory / f"{name}.parquet", index=True)
    (directory / "profile.json").write_text(json.dumps(prepared.profile, indent=2))
    (directory / "manifest.json").write_text(json.dumps(prepared.manifest, indent=2))


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _load_bundled(name: str, target: str) -> pd.DataFrame:
    if name not in BUNDLED:
        raise DataError(f"unknown bundled data set {name!r}; expected one of {sorted(BUNDLED)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, BUNDLED[name])(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame.rename(columns={"target": target})


def _snapshot_file(source: Path, directory: Path, name: str) -> tuple[Path, str]:
    """Store `source` as `<directory>/<sha256 prefix>-<name>`, read-only; reuse an equal copy."""
    digest = file_digest(source)
    target = directory / f"{digest[:16]}-{name}"
    if not target.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        partial.chmod(0o444)
        partial.replace(target)
    return target, digest


def _snapshot_parts(parts: Parts, directory: Path) -> tuple[Path, str]:
    """Store the partitions, byte for byte, as `<directory>/<digest prefix>-<title>/<name>`.

    Byte copies rather than one Parquet file written from the combined table: the digest then
    depends on the input alone, not on how a PyArrow release encodes a table, and the snapshot
    folder is itself a valid `data.source` that reads back to the same table.
    """
    digest = listing_digest([(part.name, part.path) for part in parts.parts])
    target = directory / f"{digest[:16]}-{parts.title}"
    if not target.exists():
        with staged_folder(target) as staging:
            for part in parts.parts:
                copy = staging / part.name
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(part.path, copy)
                copy.chmod(0o444)
    return target, digest


def remove(path: Path) -> None:
    """A snapshot file, or folder of partitions, that is not to be kept."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def staged_folder(directory: Path) -> Iterator[Path]:
    """A temp folder beside `directory`, swapped in for it once filled: readers see the old
    folder or the new one, never half of one."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it private; the data is not secret
        retired = directory.with_name(f".{directory.name}-old")
        if directory.exists():
            shutil.rmtree(retired, ignore_errors=True)
            directory.rename(retired)
        staging.rename(directory)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def listing_digest(files: list[tuple[str, Path]]) -> str:
    """sha256 of a `sha256sum`-style listing (`<sha256>  <name>` lines) of the files, in order.

    It covers each file's bytes and the names that fix their order, and for a snapshot folder
    can be checked by hand: `sha256sum <names in order> | sha256sum`.
    """
    return digest_of_listing([(name, file_digest(path)) for name, path in files])


def digest_of_listing(digests: list[tuple[str, str]]) -> str:
    """`listing_digest` from (name, sha256 of the file) pairs already computed."""
    listing = "".join(f"{digest}  {name}\n" for name, digest in digests)
    return hashlib.sha256(listing.encode()).hexdigest()


def load_prepared(config: DataConfig) -> PreparedData:
    """The splits, manifest and profile prepare wrote for `config`, checked against it."""
    directory = config.prepared_dir
    missing = [n for n in SPLIT_NAMES if not (directory / f"{n}.parquet").is_file()]
    if missing:
        raise DataError(
            f"no prepared data in {directory} (missing {missing[0]}.parquet): run prepare first"
        )
    splits = Splits(**{n: pd.read_parquet(directory / f"{n}.parquet") for n in SPLIT_NAMES})
    manifest = json.loads((directory / "manifest.json").read_text())
    profile = json.loads((directory / "profile.json").read_text())
    if manifest["target"] != config.target or manifest["task"] != config.task:
        raise DataError(
            f"prepared data in {directory} is for target {manifest['target']!r} "
            f"({manifest['task']}); the config says {config.target!r}: run prepare again"
        )
    return PreparedData(splits=splits, manifest=manifest, profile=profile)
