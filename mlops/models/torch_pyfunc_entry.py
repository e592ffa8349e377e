"""Models-from-code entry point: MLflow executes this file when it loads a logged `torch_mlp`.

It is never imported by the package itself; registering the model here is how MLflow's
"models from code" works (https://mlflow.org/docs/latest/model/models-from-code/).
"""

from mlflow.models import set_model

from mlops.models.logged import TorchTabularModel

set_model(TorchTabularModel())
