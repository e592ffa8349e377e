"""mlops/backup.py on plain files: what it refuses, and that a restore lands whole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mlops.backup import create, kind_of, restore
from mlops.errors import BackupError


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    with sqlite3.connect(tmp_path / "a.db") as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "f.txt").write_text("artifact")
    parts = {"db": f"sqlite:///{tmp_path / 'a.db'}", "files": str(tmp_path / "folder")}
    return create(parts, tmp_path / "out")


@pytest.mark.parametrize("location", ["s3://bucket/x", "http://server:5000"])
def test_a_location_it_cannot_back_up_is_named(location: str) -> None:
    with pytest.raises(BackupError, match=location):
        kind_of(location)


def test_a_missing_folder_is_an_error_and_leaves_no_archive(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no folder"):
        create({"files": str(tmp_path / "absent")}, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_parts_restore_into_empty_places_and_only_where_named(
    archive: Path, tmp_path: Path
) -> None:
    target = tmp_path / "restored"
    done = restore(archive, {"db": f"sqlite:///{target / 'a.db'}", "files": str(target / "f")})
    assert done == ["db", "files"]
    with sqlite3.connect(target / "a.db") as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert (target / "f" / "f.txt").read_text() == "artifact"
    assert sorted(p.name for p in target.iterdir()) == ["a.db", "f"], "nothing staged left"


def test_a_target_of_the_wrong_kind_or_none_at_all_is_refused(
    archive: Path, tmp_path: Path
) -> None:
    with pytest.raises(BackupError, match="db is a sqlite backup"):
        restore(archive, {"db": str(tmp_path / "folder-for-a-database")})
    with pytest.raises(BackupError, match="no target"):
        restore(archive, {"other": str(tmp_path / "x")})
