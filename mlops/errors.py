"""Named errors for problems a user can fix; scripts print their message and exit non-zero."""

from __future__ import annotations


class MLOpsError(Exception):
    """Base class: the message alone must tell the user what is wrong and where."""


class ConfigError(MLOpsError):
    """A config file, key or value is missing or invalid."""


class DataError(MLOpsError):
    """The input data set cannot be read or fails validation."""


class TuneError(MLOpsError):
    """A tuning session cannot start or its workers stopped before the studies were done."""


class RegistryError(MLOpsError):
    """A registered model, version or alias that a step needs is missing or unusable."""


class BackupError(MLOpsError):
    """A backup cannot be made or restored: a missing tool, an unknown store, an occupied target."""
