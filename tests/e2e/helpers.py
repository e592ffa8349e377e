"""Running the real scripts, in-process (fast) or as a subprocess (exit code and stderr)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import FAST_OVERRIDES, REPO


def run_main(script: str, *args: str) -> int:
    """Import scripts/<script>.py and call its `main(argv)`, as `make` would run it."""
    spec = importlib.util.spec_from_file_location(f"script_{script}", REPO / "scripts" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code: int = module.main(list(args))
    return code


def run_process(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        check=False,
    )


def config_args(tmp: Path, *overrides: str, base: str = "default.yaml") -> list[str]:
    paths = (f"data.prepared_dir={tmp / 'prepared'}", f"data.raw_dir={tmp / 'raw'}")
    args = ["--config", str(REPO / "configs" / base)]
    for override in (*paths, *FAST_OVERRIDES, *overrides):
        args += ["--set", override]
    return args


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")
