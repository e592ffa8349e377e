"""Benchmark of the tune step (`make bench-tune`): what tracking costs, what a second worker buys.

    python -m benchmarks.tuning --config configs/default.yaml [--parallel-trials 40] [--repeats 2]

Prints the figures and writes them to bench-results/tune-<config name>.json. Uses temporary
stores, never the repository's; the prepared data must exist (make prepare).

1. Tracking overhead: the config's tuning session (its families and trial count, one worker) run
   untracked and tracked (a child run per trial, the parent's summary, importances and plots),
   each on fresh temporary stores. The seed makes both run the same trials.
   overhead = (tracked - untracked) / tracked, in wall time and in this process's CPU time (which
   other programs on a shared machine do not inflate). Goal: at most 10 %.
2. Parallel speed-up: the scikit-learn families, `parallel_trials` trials each, tracked, with one
   worker and with two. speed-up = time(1 worker) / time(2 workers), where the time runs from
   starting the workers until every trial has finished and is logged to MLflow (what comes
   before and after takes the same time either way; the whole session's ratio is reported
   too). Goal: at least 1.6x on 2 cores. The same comparison untracked is reported beside it:
   the trial-run logger's CPU (MLflow calls, figures) runs on the core one worker leaves idle,
   but two workers have to share theirs with it.
3. What the machine itself allows: a fixed CPU-bound job (random-forest fits on one thread, what
   most trial time is) run alone and as two copies at once. ceiling = 2 x alone / two at once:
   2.0 when the second core is a whole core; less on a shared virtual machine whose cores slow
   each other down. The speed-up is also reported as a fraction of this ceiling.

Each side runs `repeats` times in A-B-B-A order and its fastest time counts; a short tracked
warm-up runs first, so no measurement pays for first imports (MLflow's store, matplotlib).
Refits and registration are not part of a session, so they are not timed. Nothing touches the
repository's stores: OPTUNA_STORAGE and MLFLOW_TRACKING_URI point into a temporary folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

from mlops import tune as tune_step
from mlops.cli import EXIT_OK, make_parser, parse, run_step
from mlops.config import Config
from mlops.data import FitInputs, PreparedData, load_prepared
from mlops.models.families import family_params, fit_family
from mlops.tracking import configure_tracking, use_experiment
from mlops.tuning.workers import process_context, run_workers, trial_threads

log = logging.getLogger(__name__)

SKLEARN_FAMILIES = ("linear", "random_forest")
OVERHEAD_GOAL = 0.10
SPEEDUP_GOAL = 1.6


def bench_tune(config: Config, parallel_trials: int, repeats: int, out: Path) -> dict[str, Any]:
    """Run both measurements `repeats` times, interleaved; write and return the figures."""
    prepared = load_prepared(config.data)
    sklearn = _with(config, families=SKLEARN_FAMILIES, trials=parallel_trials)
    runs = {
        "untracked": (config, False),
        "tracked": (config, True),
        "one_worker": (sklearn, True),
        "two_workers": (_with(sklearn, workers=2), True),
        "one_worker_untracked": (sklearn, False),
        "two_workers_untracked": (_with(sklearn, workers=2), False),
    }
    # A-B-B-A order, so a slow spell on a shared machine hits both sides alike; the minimum of a
    # side is its least disturbed time.
    order = _abba("untracked", "tracked", repeats)
    order += _abba("one_worker", "two_workers", repeats)
    order += _abba("one_worker_untracked", "two_workers_untracked", repeats)
    times: dict[str, list[Timing]] = {name: [] for name in runs}
    jobs: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as folder:
        root = Path(folder)
        _timed(_with(config, trials=2), prepared, root / "warmup", track=True)
        for i, name in enumerate(order):
            run_config, track = runs[name]
            times[name].append(_timed(run_config, prepared, root / f"{i}-{name}", track))
            if name == "one_worker" and len(times[name]) % 2 == 0:  # end of a parallel round
                for copies in (1, 2, 2, 1):
                    jobs[copies].append(_cpu_jobs(config, prepared, copies))
    results = _figures(config, parallel_trials, times, jobs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


def _figures(
    config: Config,
    parallel_trials: int,
    times: dict[str, list[Timing]],
    jobs: dict[int, list[float]],
) -> dict[str, Any]:
    wall = {name: min(t.wall for t in samples) for name, samples in times.items()}
    cpu = {name: min(t.cpu for t in samples) for name, samples in times.items()}
    trials = {name: min(t.trials for t in samples) for name, samples in times.items()}
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "wall_s": {name: [t.wall for t in samples] for name, samples in times.items()},
        "trials_wall_s": {name: [t.trials for t in samples] for name, samples in times.items()},
        # This process only: worker processes are not its children (they fork from a server).
        "cpu_s": {name: [t.cpu for t in samples] for name, samples in times.items()},
        "tracking": {
            "families": list(config.tune.families),
            "trials_per_family": config.tune.trials,
            "overhead_wall": (wall["tracked"] - wall["untracked"]) / wall["tracked"],
            "overhead_cpu": (cpu["tracked"] - cpu["untracked"]) / cpu["tracked"],
            "goal_max": OVERHEAD_GOAL,
        },
        "parallel": {
            "families": list(SKLEARN_FAMILIES),
            "trials_per_family": parallel_trials,
            "speedup": trials["one_worker"] / trials["two_workers"],
            "machine_ceiling": 2 * min(jobs[1]) / min(jobs[2]),
            "cpu_job_s": {"alone": jobs[1], "two_at_once": jobs[2]},
            "session_speedup": wall["one_worker"] / wall["two_workers"],
            # The workers alone: with tracking, the trial-run logger needs CPU too, which one
            # worker leaves idle on the second core but two workers must share.
            "speedup_untracked": trials["one_worker_untracked"] / trials["two_workers_untracked"],
            "goal_min": SPEEDUP_GOAL,
        },
    }


def _abba(a: str, b: str, repeats: int) -> list[str]:
    return [a, b, b, a] * repeats


def _with(config: Config, **tune: Any) -> Config:
    if "families" in tune:
        tune["families"] = tuple(tune["families"])
    return dataclasses.replace(config, tune=dataclasses.replace(config.tune, **tune))


def _cpu_jobs(config: Config, prepared: PreparedData, copies: int) -> float:
    """Seconds until `copies` processes, started together, have each fitted the same forests on
    one thread (process start-up and imports not included)."""
    context = process_context()
    inputs = prepared.fit_inputs(config.seed)
    start, seconds = context.Barrier(copies), context.Queue()
    processes = [
        context.Process(target=_fit_forests, args=(config, inputs, start, seconds))
        for _ in range(copies)
    ]
    for process in processes:
        process.start()
    slowest = max(seconds.get() for _ in processes)
    for process in processes:
        process.join()
    return float(slowest)


def _fit_forests(
    config: Config, inputs: FitInputs, start: Any, seconds: Any, fits: int = 8
) -> None:
    params = family_params(config.train, "random_forest")
    with trial_threads(1):
        start.wait()
        started = time.perf_counter()
        for _ in range(fits):
            fit_family("random_forest", params, inputs)
        seconds.put(time.perf_counter() - started)


@dataclass(frozen=True)
class Timing:
    wall: float  # the whole session
    trials: float  # from starting the workers until the last one stopped
    cpu: float  # this process's CPU time


def _timed(config: Config, prepared: PreparedData, folder: Path, track: bool) -> Timing:
    """One session on fresh stores in `folder`."""
    trials: list[float] = []

    def timed_workers(*args: Any) -> list[int | None]:
        started = time.perf_counter()
        try:
            return run_workers(*args)
        finally:
            trials.append(time.perf_counter() - started)

    with _stores(folder), patch.object(tune_step, "run_workers", timed_workers):
        configure_tracking()
        experiment_id = use_experiment(config.experiment) if track else None
        cpu, started = time.process_time(), time.perf_counter()
        tune_step.run_session(config, prepared, experiment_id)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.info("%s: %.1f s wall (trials %.1f s), %.1f s CPU", folder.name, wall, trials[0], cpu)
    return Timing(wall, trials[0], cpu)


@contextmanager
def _stores(folder: Path) -> Iterator[None]:
    """Fresh Optuna and MLflow stores in `folder` for this process and its worker processes."""
    folder.mkdir(parents=True)
    names = ("OPTUNA_STORAGE", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["OPTUNA_STORAGE"] = f"sqlite:///{folder / 'optuna.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__ or "")
    parser.add_argument(
        "--parallel-trials", type=int, default=40, help="trials per scikit-learn family"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="A-B-B-A rounds per comparison (fastest counts)"
    )
    args = parse(parser, argv)

    def step(config: Config) -> int:
        out = Path("bench-results") / f"tune-{args.config.stem}.json"
        results = bench_tune(config, args.parallel_trials, args.repeats, out)
        tracking, parallel = results["tracking"], results["parallel"]
        wall = {k: ", ".join(f"{s:.1f}" for s in v) for k, v in results["wall_s"].items()}
        cpu = {k: ", ".join(f"{s:.1f}" for s in v) for k, v in results["cpu_s"].items()}
        print(
            f"tracking overhead: {tracking['overhead_wall']:.1%} of tuning wall time "
            f"(tracked {wall['tracked']} s, untracked {wall['untracked']} s), "
            f"{tracking['overhead_cpu']:.1%} of CPU time (tracked {cpu['tracked']} s, "
            f"untracked {cpu['untracked']} s); goal <= {tracking['goal_max']:.0%}"
        )
        trials = {k: ", ".join(f"{s:.1f}" for s in v) for k, v in results["trials_wall_s"].items()}
        print(
            f"2 workers vs 1: {parallel['speedup']:.2f}x running the trials (1 worker "
            f"{trials['one_worker']} s, 2 workers {trials['two_workers']} s, {results['cpus']} "
            f"CPUs; goal >= {parallel['goal_min']}x); whole session with summaries "
            f"{parallel['session_speedup']:.2f}x ({wall['one_worker']} s, {wall['two_workers']} s)"
        )
        print(
            f"untracked, the workers alone: {parallel['speedup_untracked']:.2f}x (1 worker "
            f"{trials['one_worker_untracked']} s, 2 workers {trials['two_workers_untracked']} s)"
        )
        print(
            f"this machine's own 2-core ceiling (forest fits, 1 vs 2 at once): "
            f"{parallel['machine_ceiling']:.2f}x, so the speed-up is "
            f"{parallel['speedup'] / parallel['machine_ceiling']:.0%} of what 2 cores gave here"
        )
        print(f"written to {out}")
        return EXIT_OK

    return run_step(args, step)


if __name__ == "__main__":
    sys.exit(main())
