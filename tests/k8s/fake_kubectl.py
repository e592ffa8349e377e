#!/usr/bin/env python3
"""A stand-in `kubectl` running k8s/deploy.sh without a cluster (tests/k8s/test_deploy_script.py).

It answers from files in $FAKE_CLUSTER (a folder the test writes) and records every call in
$FAKE_CLUSTER/calls.log; `kustomize` goes to the real kubectl ($REAL_KUBECTL), rendering offline.

  context                 the current context's name (absent: no context)
  namespace               present: the namespace exists
  <kind>.json             the answer to `get <kind> ... -o json` (secret, storageclass, pods, pvc,
                          events); absent: no items
  workloads               the answer to `get deployments,statefulsets -o name`
  rolled-out              names of workloads whose rollout is done, one a line
  job-<name>              the Job's true condition types ("Complete", "Failed"); absent: none yet
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

FAKE = Path(os.environ["FAKE_CLUSTER"])


def read(name: str, default: str = "") -> str:
    path = FAKE / name
    return path.read_text() if path.exists() else default


def get(args: list[str]) -> int:
    kind = args[0]
    if kind == "namespace":
        print(f"namespace/{args[1]}" if (FAKE / "namespace").exists() else "")
    elif kind == "deployments,statefulsets":
        print(read("workloads"))
    elif kind == "job":
        print(read(f"job-{args[1]}"), end="")
    else:
        print(read(f"{kind}.json", json.dumps({"items": []})))
    return 0


def main(args: list[str]) -> int:
    args = [a for a in args if not a.startswith("--request-timeout")]
    with (FAKE / "calls.log").open("a") as log:
        log.write(" ".join(args) + "\n")
    if args[0] == "kustomize":
        os.execv(os.environ["REAL_KUBECTL"], [os.environ["REAL_KUBECTL"], *args])
    if args[:2] == ["config", "current-context"]:
        if not (FAKE / "context").exists():
            print("error: current-context is not set", file=sys.stderr)
            return 1
        print(read("context"))
        return 0
    if args[:2] == ["rollout", "status"]:
        return 0 if args[2].split("/")[-1] in read("rolled-out").split() else 1
    if args[0] == "get":
        return get(args[1:])
    return 0  # apply, delete, logs: recorded only


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
