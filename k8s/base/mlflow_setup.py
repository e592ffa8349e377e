"""Prepare MLflow's database once, before the tracking server starts (the `mlflow-setup` Job).

    python /setup/mlflow_setup.py --config configs/default.yaml     # in MLflow's own image

Environment: MLFLOW_BACKEND_STORE_URI; MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD;
PIPELINE_USERNAME / PIPELINE_PASSWORD and MODEL_SERVER_USERNAME / MODEL_SERVER_PASSWORD.

1. Schema: a fresh database gets MLflow's tables, an existing one is upgraded (`mlflow db
   upgrade`). Done here, once, so that two tracking-server replicas never migrate at the same time
   (on a fresh database they race and one fails).
2. basic-auth: its tables migrated; the admin and two least-privilege users created, or their
   passwords set to the Secrets' values (to rotate one: change the Secret, deploy again).
3. The config's experiment and registered model exist, and are granted: the pipeline EDIT (log
   runs, register versions, move aliases), the model server READ (resolve the alias, download
   the champion's artifacts, which belong to the experiment). Nobody else gets anything
   (`default_permission = NO_PERMISSIONS` in the server's basic-auth settings).

Every step is idempotent: the Job runs on every deploy. tests/k8s/test_mlflow_setup.py runs this
file against a real PostgreSQL and a real basic-auth server.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import sqlalchemy
import yaml
from mlflow.exceptions import MlflowException
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
from mlflow.store.db.utils import _upgrade_db
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

# What `mlflow server --serve-artifacts` uses as the default artifact root: experiments created
# here store their artifacts where the server's own would (mlflow-artifacts:/<experiment id>).
ARTIFACT_ROOT = "mlflow-artifacts:/"
USERS = {  # environment prefix -> (is admin, permission on the experiment and the model)
    "MLFLOW_AUTH_ADMIN": (True, None),
    "PIPELINE": (False, "EDIT"),
    "MODEL_SERVER": (False, "READ"),
}


def migrate(uri: str) -> None:
    engine = sqlalchemy.create_engine(uri)
    fresh = "experiments" not in sqlalchemy.inspect(engine).get_table_names()
    if not fresh:
        _upgrade_db(engine)  # what `mlflow db upgrade` runs
    engine.dispose()
    TrackingStore(uri, ARTIFACT_ROOT)  # a fresh database: creates the tables at the newest revision
    print(f"schema: {'created' if fresh else 'upgraded'}")


def upsert_user(auth: AuthStore, username: str, password: str, is_admin: bool) -> None:
    if auth.has_user(username):
        auth.update_user(username, password=password, is_admin=is_admin)
        print(f"user {username}: password set")
    else:
        auth.create_user(username, password, is_admin=is_admin)
        print(f"user {username}: created")


def ensure_resources(uri: str, experiment: str, model: str) -> str:
    tracking = TrackingStore(uri, ARTIFACT_ROOT)
    found = tracking.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else tracking.create_experiment(experiment)
    registry = RegistryStore(uri)
    try:
        registry.get_registered_model(model)
    except MlflowException:
        registry.create_registered_model(model)
    return str(experiment_id)


def grant(auth: AuthStore, username: str, experiment_id: str, model: str, permission: str) -> None:
    try:
        auth.create_experiment_permission(experiment_id, username, permission)
    except MlflowException:
        auth.update_experiment_permission(experiment_id, username, permission)
    try:
        auth.create_registered_model_permission(model, username, permission)
    except MlflowException:
        auth.update_registered_model_permission(model, username, permission)
    print(f"user {username}: {permission} on experiment {experiment_id} and model {model}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True, help="pipeline config naming the model")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    uri = os.environ["MLFLOW_BACKEND_STORE_URI"]
    migrate(uri)
    auth = AuthStore()
    auth.init_db(uri)
    experiment_id = ensure_resources(uri, config["experiment"], config["registered_model"])
    for prefix, (is_admin, permission) in USERS.items():
        username = os.environ[f"{prefix}_USERNAME"]
        upsert_user(auth, username, os.environ[f"{prefix}_PASSWORD"], is_admin)
        if permission:
            grant(auth, username, experiment_id, config["registered_model"], permission)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
