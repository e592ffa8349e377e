"""Back up and restore the MLflow store and the Optuna storage: one .tar.gz per backup.

A backup holds `manifest.json` and one file per part: a PostgreSQL database as `pg_dump -Fc`, a
SQLite database copied by SQLite's online backup API (consistent while the pipeline writes), a
folder (the embedded store's artifacts) as it is. Restore checks every target before touching
any, refuses one that holds data unless `force`, and lands each part whole or not at all: one
`pg_restore --single-transaction`, or files staged beside their target and renamed into place.
`make backup` / `make restore` run it (scripts/backup.py); the k8s backup CronJob writes the same
format (k8s/README.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy

from mlops.errors import BackupError
from mlops.tuning.study import shown_url

SUFFIXES = {"postgresql": ".dump", "sqlite": ".db", "folder": ""}


def kind_of(location: str) -> str:
    if location.startswith("postgresql"):
        return "postgresql"
    if location.startswith("sqlite:///"):
        return "sqlite"
    if "://" not in location:
        return "folder"
    raise BackupError(f"cannot back up {location!r}: expected postgresql://, sqlite:/// or a path")


def create(parts: dict[str, str], out_dir: Path) -> Path:
    """Back up each part (name -> database URI or folder) to out_dir/mlops-backup-<UTC>.tar.gz."""
    target = out_dir / f"mlops-backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.tar.gz"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        entries = {}
        for name, location in parts.items():
            kind = kind_of(location)
            _dump(kind, location, Path(tmp) / f"{name}{SUFFIXES[kind]}")
            entries[name] = {"kind": kind, "file": f"{name}{SUFFIXES[kind]}"}
        (Path(tmp) / "manifest.json").write_text(json.dumps({"format": 1, "parts": entries}))
        partial = out_dir / f".{target.name}.partial"
        with tarfile.open(partial, "w:gz") as tar:
            for path in sorted(Path(tmp).iterdir()):
                tar.add(path, arcname=path.name)
        partial.replace(target)
    return target


def _dump(kind: str, location: str, file: Path) -> None:
    if kind == "postgresql":
        _pg("pg_dump", location, "--format=custom", f"--file={file}")
    elif kind == "sqlite":
        with (
            closing(sqlite3.connect(_path(location))) as src,
            closing(sqlite3.connect(file)) as dst,
        ):
            src.backup(dst)
    elif Path(location).is_dir():
        shutil.copytree(location, file)
    else:
        raise BackupError(f"no folder {location} to back up")


def restore(archive: Path, targets: dict[str, str], force: bool = False) -> list[str]:
    """Restore each part of `archive` that `targets` names (name -> database URI or folder);
    return their names. Parts without a target are left out."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        parts = json.loads((Path(tmp) / "manifest.json").read_text())["parts"]
        chosen = {name: location for name, location in targets.items() if name in parts}
        if not chosen:
            raise BackupError(f"{archive} holds {sorted(parts)}: no target for any of them")
        for name, location in chosen.items():
            if parts[name]["kind"] != kind_of(location):
                kind = parts[name]["kind"]
                raise BackupError(f"{name} is a {kind} backup, not for {shown_url(location)}")
            if not force and _holds_data(kind_of(location), location):
                raise BackupError(f"{shown_url(location)} holds data: --force replaces it")
        for name, location in chosen.items():
            _load(parts[name]["kind"], Path(tmp) / parts[name]["file"], location, force)
    return sorted(chosen)


def _holds_data(kind: str, location: str) -> bool:
    if kind != "postgresql":
        path = _path(location)
        return (path.is_file() and path.stat().st_size > 0) or any(path.glob("*"))
    engine = sqlalchemy.create_engine(location)
    try:
        return bool(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _load(kind: str, source: Path, location: str, force: bool) -> None:
    if kind == "postgresql":
        flags = ["--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges"]
        clean = ["--clean", "--if-exists"] if force else []
        _pg("pg_restore", location, *flags, *clean, str(source))
        return
    target = _path(location)
    staged, old = (target.with_name(f".{target.name}.{end}") for end in ("restoring", "old"))
    target.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if kind == "folder" else shutil.copy2)(source, staged)
    if target.exists():
        target.rename(old)
    staged.rename(target)
    shutil.rmtree(old, ignore_errors=True) if kind == "folder" else old.unlink(missing_ok=True)


def _pg(tool: str, uri: str, *args: str) -> None:
    """Run pg_dump / pg_restore; the password goes in PGPASSWORD, not on the command line.

    The newest installed version first: pg_dump must be at least as new as the server it dumps."""
    url = sqlalchemy.engine.make_url(uri)
    dsn = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    installed = Path("/usr/lib/postgresql").glob(f"*/bin/{tool}")
    binary = str(max(installed, key=lambda p: int(p.parts[4]), default="")) or shutil.which(tool)
    if not binary:
        raise BackupError(f"{tool} not found: install PostgreSQL's client (postgresql-client)")
    env = {**os.environ, "PGPASSWORD": url.password or os.environ.get("PGPASSWORD", "")}
    done = subprocess.run(
        [binary, *args, f"--dbname={dsn}"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BackupError(f"{tool} failed on {url}: {done.stderr.strip()}")


def _path(location: str) -> Path:
    """The file of a sqlite:/// URI, or the folder itself."""
    return Path(location.removeprefix("sqlite:///"))
