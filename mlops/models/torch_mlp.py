"""A PyTorch multi-layer perceptron for tabular data, with the preprocessing it needs.

`TorchMLP` takes raw columns (a DataFrame) like a scikit-learn pipeline: our fitted preprocessor
turns them into floats, the network does the rest. Training is deterministic for a seed (seeded
initialisation and shuffling, deterministic kernels), stops early on the validation loss and keeps
the best epoch's weights. CUDA is used when present and `device` is "auto".
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlops.config import MLPParams
from mlops.errors import ConfigError

if TYPE_CHECKING:  # only for annotations: mlops.data does not travel inside a logged model
    from mlops.data import FitInputs

log = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_thread_limit(threads: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to `threads` inside the block, restored after. A small
    network gains nothing from more and loses a lot when cores are busy, and one thread makes a
    fit repeat bit for bit."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


EpochCallback = Callable[[int, "TorchMLP"], None]
Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class NetworkSpec:
    """Everything needed to rebuild the network around saved weights (stored as JSON)."""

    input_dim: int
    hidden_units: tuple[int, ...]
    dropout: float
    task: str
    classes: tuple[Any, ...] = ()
    # Regression targets are standardised for training; predictions are scaled back.
    target_mean: float = 0.0
    target_std: float = 1.0


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def build_network(spec: NetworkSpec) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = spec.input_dim
    for units in spec.hidden_units:
        layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(spec.dropout)]
        width = units
    layers.append(nn.Linear(width, len(spec.classes) if spec.task == "classification" else 1))
    return nn.Sequential(*layers)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.torch_mlp.device is 'cuda' but no CUDA device is available")
    return torch.device(requested)


class TorchMLP:
    """Preprocessor + network; `predict` / `predict_proba` take raw-column DataFrames."""

    def __init__(self, preprocessor: Any, network: nn.Sequential, spec: NetworkSpec) -> None:
        self.preprocessor = preprocessor
        self.network = network
        self.spec = spec
        self.history = History()

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.spec.classes)

    def on_features(self) -> TorchMLP:
        """The same network without the preprocessor: its methods take feature matrices (what
        the preprocessor outputs). The server transforms request rows itself (serving/columns)."""
        return TorchMLP(None, self.network, self.spec)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        inputs = frame if self.preprocessor is None else self.preprocessor.transform(frame)
        features = np.asarray(inputs, dtype=np.float32)
        device = next(self.network.parameters()).device
        if self.network.training:  # eval() walks every module: about 20 us a call, even when set
            self.network.eval()
        with torch.inference_mode():
            outputs = self.network(torch.from_numpy(features).to(device))
        return np.asarray(outputs.cpu().numpy(), dtype=np.float64)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        logits = torch.from_numpy(self.scores(frame))
        return np.asarray(torch.softmax(logits, dim=1).numpy())

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self.spec.task == "classification":
            labels: np.ndarray = self.classes_[self.predict_proba(frame).argmax(axis=1)]
            return labels
        return self.scores(frame)[:, 0] * self.spec.target_std + self.spec.target_mean


def fit_mlp(
    preprocessor: Any, inputs: FitInputs, params: MLPParams, on_epoch: EpochCallback | None = None
) -> TorchMLP:
    """Fit the preprocessor on the training rows only, then the network with early stopping."""
    torch.manual_seed(inputs.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    x_train = preprocessor.fit_transform(inputs.train[0])
    spec = _spec(x_train.shape[1], inputs.train[1], params, inputs.task)
    model = TorchMLP(preprocessor, build_network(spec), spec)
    device = pick_device(params.device)
    model.network.to(device)

    def tensors(x: Any, y: pd.Series) -> Tensors:
        rows = torch.from_numpy(np.asarray(x, dtype=np.float32))
        return rows.to(device), _encode(y, spec).to(device)

    train = tensors(x_train, inputs.train[1])
    validation = tensors(preprocessor.transform(inputs.validation[0]), inputs.validation[1])
    shuffle = torch.Generator().manual_seed(inputs.seed)
    _train_loop(model, train, validation, params, shuffle, on_epoch)
    model.network.to("cpu")
    return model


def _spec(input_dim: int, target: pd.Series, params: MLPParams, task: str) -> NetworkSpec:
    shape = NetworkSpec(input_dim, params.hidden_units, params.dropout, task)
    if task == "classification":
        return dataclasses.replace(shape, classes=tuple(np.unique(target).tolist()))
    std = float(target.std(ddof=0)) or 1.0
    return dataclasses.replace(shape, target_mean=float(target.mean()), target_std=std)


def _encode(target: pd.Series, spec: NetworkSpec) -> torch.Tensor:
    if spec.task == "classification":
        index = {c: i for i, c in enumerate(spec.classes)}
        return torch.tensor([index[v] for v in target.tolist()])
    scaled = (target.to_numpy(dtype=np.float32) - spec.target_mean) / spec.target_std
    return torch.from_numpy(scaled.astype(np.float32)).unsqueeze(1)


def _train_loop(
    model: TorchMLP,
    train: Tensors,
    validation: Tensors,
    params: MLPParams,
    shuffle: torch.Generator,
    on_epoch: EpochCallback | None,
) -> None:
    """Train until the validation loss has not improved for `patience` epochs; keep the best."""
    network, (x_val, y_val) = model.network, validation
    loss_fn: nn.Module = (
        nn.CrossEntropyLoss() if model.spec.task == "classification" else nn.MSELoss()
    )
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay
    )
    best_loss, best_state, waited = float("inf"), copy.deepcopy(network.state_dict()), 0
    for epoch in range(params.max_epochs):
        loss = _train_epoch(network, train, params.batch_size, shuffle, loss_fn, optimizer)
        model.history.train_loss.append(loss)
        network.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(network(x_val), y_val).item())
        model.history.validation_loss.append(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, model)
        if val_loss < best_loss:
            best_loss, best_state, waited = val_loss, copy.deepcopy(network.state_dict()), 0
            model.history.best_epoch = epoch
        else:
            waited += 1
            if waited >= params.patience:
                log.info("early stop at epoch %d (best %d)", epoch, model.history.best_epoch)
                break
    network.load_state_dict(best_state)


def _train_epoch(
    network: nn.Module,
    data: Tensors,
    batch_size: int,
    shuffle: torch.Generator,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One pass in mini-batches of rows shuffled by the seeded generator; the mean loss per row."""
    x, y = data
    network.train()
    total = 0.0
    for rows in torch.split(torch.randperm(len(x), generator=shuffle).to(x.device), batch_size):
        optimizer.zero_grad()
        loss = loss_fn(network(x[rows]), y[rows])
        loss.backward()
        optimizer.step()
        total += float(loss.item()) * len(rows)
    return total / len(x)
