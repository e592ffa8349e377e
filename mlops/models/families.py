"""The model families a config can list, each built and fitted from raw columns to predictions.

`linear` and `random_forest` are scikit-learn Pipelines (our preprocessor + estimator);
`torch_mlp` is a `TorchMLP` (the same preprocessor + a PyTorch network). All three expose
`predict(frame)`, and `predict_proba(frame)` with `classes_` for classification. The preprocessor
is fitted on the training split only and travels inside every logged model, so training and
serving cannot disagree about features: missing values are imputed, unseen categories ignored.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.config import ForestParams, LinearParams, MLPParams, TrainConfig
from mlops.data import FitInputs
from mlops.models.torch_mlp import EpochCallback, fit_mlp

FamilyParams = LinearParams | ForestParams | MLPParams


def family_params(train_config: TrainConfig, family: str) -> FamilyParams:
    params: FamilyParams = getattr(train_config, family)
    return params


def fit_family(
    family: str, params: FamilyParams, inputs: FitInputs, on_epoch: EpochCallback | None = None
) -> Any:
    """Fit one family on the training split (the MLP also watches the validation split)."""
    preprocessor = build_preprocessor(inputs.kinds)
    if isinstance(params, MLPParams):
        return fit_mlp(preprocessor, inputs, params, on_epoch)
    estimator = _sklearn_estimator(params, inputs.task, inputs.seed)
    pipeline = Pipeline([("preprocess", preprocessor), ("model", estimator)]).fit(*inputs.train)
    if "model__n_jobs" in pipeline.get_params():
        # Fit on every core, predict on one: per-call thread start-up costs more than small
        # batches gain, and a server parallelises across requests instead.
        pipeline.set_params(model__n_jobs=1)
    return pipeline


def build_preprocessor(kinds: dict[str, str]) -> ColumnTransformer:
    numeric = [c for c, k in kinds.items() if k == "numeric"]
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        numeric_steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if categorical:
        categorical_steps = [
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
        transformers.append(("categorical", Pipeline(categorical_steps), categorical))
    # Dense float output: the PyTorch network needs it, and our data sets are small and narrow.
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _sklearn_estimator(params: LinearParams | ForestParams, task: str, seed: int) -> Any:
    classify = task == "classification"
    if isinstance(params, LinearParams):
        if classify:
            return LogisticRegression(C=params.C, max_iter=params.max_iter, random_state=seed)
        return Ridge(alpha=1.0 / params.C, max_iter=params.max_iter)
    forest = RandomForestClassifier if classify else RandomForestRegressor
    return forest(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf,
        max_features=params.max_features,
        random_state=seed,
        n_jobs=-1,
    )
