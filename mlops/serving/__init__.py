"""The model server: MLflow scoring protocol and Open Inference Protocol v2 on Starlette + uvicorn.

Start it with `make serve` (scripts/serve.py); see docs/serving.md for the endpoints, the
settings and the benchmark. Module map: `settings` (what to serve, how), `schema` + `validate`
(what a model accepts), `mlflow_protocol` + `v2` (the two wire formats), `model` (loading and the
fast path), `batching`, `lifecycle` (readiness, hot reload, shutdown), `metrics`, `app` (routes),
`server` (sockets, workers, signals). Its benchmark, `make bench`, lives in benchmarks/.
"""
