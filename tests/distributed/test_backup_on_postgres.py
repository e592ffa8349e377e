"""make backup / make restore on PostgreSQL: a populated registry and Optuna study survive a
dropped database. pg_dump / pg_restore are the machine's (scripts/throwaway_postgres.sh's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.distributed.conftest import create_database
from tests.e2e.helpers import run_main
from tests.registry import check_restored, populate

pytestmark = pytest.mark.postgres


def _psycopg(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def recreate(server_uri: str, database_uri: str) -> None:
    """DROP the database (closing every connection to it) and CREATE it again, empty."""
    name = database_uri.rsplit("/", 1)[1]
    engine = sa.create_engine(_psycopg(server_uri), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def test_a_dropped_registry_comes_back_and_the_champion_predicts_the_same(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow_db = _psycopg(create_database(postgres_server))
    optuna_db = _psycopg(create_database(postgres_server))
    # Artifacts stay in their folder (in production: the versioned bucket), as a server's would.
    before = populate(mlflow_db, tmp_path / "artifacts", optuna_db)
    args = [
        "--mlflow-db",
        mlflow_db,
        "--artifacts",
        "s3://bucket",
        "--set",
        f"tune.storage={optuna_db}",
    ]
    assert run_main("backup.py", "create", "--out", str(tmp_path / "backups"), *args) == 0
    (archive,) = (tmp_path / "backups").glob("mlops-backup-*.tar.gz")

    recreate(postgres_server, mlflow_db)
    recreate(postgres_server, optuna_db)
    assert run_main("backup.py", "restore", str(archive), *args) == 0
    check_restored(mlflow_db, optuna_db, before)
    assert run_main("backup.py", "restore", str(archive), *args) == 1, "now it holds data"
    assert run_main("backup.py", "restore", str(archive), "--force", *args) == 0
    check_restored(mlflow_db, optuna_db, before)
