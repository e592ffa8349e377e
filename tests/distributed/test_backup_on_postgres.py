"""make backup / make restore on PostgreSQL: a populated registry and Optuna study survive a
dropped database; the k8s backup CronJob's dump restores the same way. pg_dump / pg_restore are
the machine's (those of scripts/throwaway_postgres.sh's server)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.distributed.conftest import create_database
from tests.e2e.helpers import run_main
from tests.k8s.manifests import PROD_SETTINGS, container, kustomize_with, pod_of
from tests.registry import Populated, check_restored, populate

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Registry:
    server: str  # the maintenance database's URI, for DROP / CREATE
    mlflow_db: str
    optuna_db: str
    before: Populated

    def args(self, mlflow_db: str | None = None, optuna_db: str | None = None) -> list[str]:
        # Artifacts stay in their folder (in production: the versioned bucket), as a server's would.
        optuna = f"tune.storage={optuna_db or self.optuna_db}"
        return [
            "--mlflow-db",
            mlflow_db or self.mlflow_db,
            "--artifacts",
            "s3://b",
            "--set",
            optuna,
        ]


def _psycopg(uri: str) -> str:
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="module")
def registry(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OPTUNA_STORAGE", raising=False)
        env.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow_db = _psycopg(create_database(postgres_server))
        optuna_db = _psycopg(create_database(postgres_server))
        artifacts = tmp_path_factory.mktemp("artifacts")
        return Registry(
            postgres_server, mlflow_db, optuna_db, populate(mlflow_db, artifacts, optuna_db)
        )


def recreate(server_uri: str, database_uri: str) -> None:
    """DROP the database (closing every connection to it) and CREATE it again, empty."""
    name = database_uri.rsplit("/", 1)[1]
    engine = sa.create_engine(_psycopg(server_uri), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def test_a_dropped_registry_comes_back_and_the_champion_predicts_the_same(
    registry: Registry, tmp_path: Path
) -> None:
    assert run_main("backup.py", "create", "--out", str(tmp_path), *registry.args()) == 0
    (archive,) = tmp_path.glob("mlops-backup-*.tar.gz")
    recreate(registry.server, registry.mlflow_db)
    recreate(registry.server, registry.optuna_db)
    assert run_main("backup.py", "restore", str(archive), *registry.args()) == 0
    check_restored(registry.mlflow_db, registry.optuna_db, registry.before)
    assert run_main("backup.py", "restore", str(archive), *registry.args()) == 1, "holds data"
    assert run_main("backup.py", "restore", str(archive), "--force", *registry.args()) == 0
    check_restored(registry.mlflow_db, registry.optuna_db, registry.before)


def test_the_backup_cronjobs_dump_restores_with_make_restore(
    registry: Registry, tmp_path: Path
) -> None:
    objs = kustomize_with(tmp_path / "k8s", "prod", [], PROD_SETTINGS)
    script = container(pod_of(objs, "CronJob/backup"), "dump")["args"][0]
    (tmp_path / "backup").mkdir()
    pg_bin = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parts[4]))
    env = {
        **os.environ,
        "PATH": f"{pg_bin}:{os.environ['PATH']}",
        "MLFLOW_DATABASE": registry.mlflow_db,
        "OPTUNA_DATABASE": registry.optuna_db,
    }
    local = script.replace("/backup", str(tmp_path / "backup"))
    done = subprocess.run(
        ["/bin/sh", "-c", local], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    (archive,) = (tmp_path / "backup").glob("mlops-backup-*.tar.gz")
    mlflow_db = _psycopg(create_database(registry.server))
    optuna_db = _psycopg(create_database(registry.server))
    assert run_main("backup.py", "restore", str(archive), *registry.args(mlflow_db, optuna_db)) == 0
    check_restored(mlflow_db, optuna_db, registry.before)
