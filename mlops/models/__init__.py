"""Model families: building, fitting and logging them as self-contained MLflow models."""
