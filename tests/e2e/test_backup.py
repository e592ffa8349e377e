"""make backup / make restore on the embedded store: SQLite databases and the artifact folder."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.helpers import run_main
from tests.registry import Populated, check_restored, populate

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class BackedUp:
    store: Path
    archive: Path
    before: Populated

    @property
    def mlflow_db(self) -> str:
        return f"sqlite:///{self.store / 'mlflow.db'}"

    @property
    def optuna_db(self) -> str:
        return f"sqlite:///{self.store / 'optuna.db'}"

    @property
    def args(self) -> list[str]:
        artifacts = ["--artifacts", str(self.store / "artifacts")]
        return [
            "--mlflow-db",
            self.mlflow_db,
            *artifacts,
            "--set",
            f"tune.storage={self.optuna_db}",
        ]


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> BackedUp:
    """An embedded store (registry, artifacts, Optuna study) and one backup of it."""
    tmp = tmp_path_factory.mktemp("backup")
    store = tmp / "store"
    store.mkdir()
    before = populate(
        f"sqlite:///{store / 'mlflow.db'}", store / "artifacts", f"sqlite:///{store / 'optuna.db'}"
    )
    partial = BackedUp(store, tmp / "none", before)
    assert run_main("backup.py", "create", "--out", str(tmp / "backups"), *partial.args) == 0
    (archive,) = (tmp / "backups").glob("mlops-backup-*.tar.gz")
    return BackedUp(store, archive, before)


def test_a_deleted_embedded_store_comes_back_whole(backed_up: BackedUp) -> None:
    shutil.rmtree(backed_up.store)
    assert run_main("backup.py", "restore", str(backed_up.archive), *backed_up.args) == 0
    check_restored(backed_up.mlflow_db, backed_up.optuna_db, backed_up.before)


def test_restore_refuses_a_store_that_holds_data_unless_forced(
    backed_up: BackedUp, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_main("backup.py", "restore", str(backed_up.archive), *backed_up.args) == 1
    assert "holds data: --force replaces it" in caplog.text
    assert run_main("backup.py", "restore", str(backed_up.archive), "--force", *backed_up.args) == 0
    check_restored(backed_up.mlflow_db, backed_up.optuna_db, backed_up.before)
    assert not list(backed_up.store.glob(".*")), "no staged or old copies left behind"
