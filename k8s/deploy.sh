#!/usr/bin/env bash
# Deploy an overlay to the cluster of kubectl's current context; called by `make k8s-*`.
#
#   k8s/deploy.sh render    OVERLAY IMAGE:TAG        print the manifests that would be applied
#   k8s/deploy.sh namespace OVERLAY IMAGE:TAG        create the namespace only (then your Secrets)
#   k8s/deploy.sh apply     OVERLAY IMAGE:TAG        check, apply, run prepare -> train -> promote
#   k8s/deploy.sh job       OVERLAY IMAGE:TAG STEP   (re)run one step: prepare|train|promote|tune
#
# The overlays name the image ghcr.io/example/mlops; a throwaway kustomization on top of the overlay
# swaps in IMAGE:TAG, so nothing in the repository is edited. Jobs (label mlops/step) are applied
# one at a time, in order, because a Job's pod template cannot change once it exists; objects
# labelled mlops/after=STEP are applied once that step's Job has completed (the tracking server
# after mlflow-setup has migrated its database).
#
# Fail fast: `apply` and `job` first run k8s/checks.py preflight (settings placeholders, context,
# namespace, Secret keys, storage classes, the image) and stop before applying anything if one
# fails. While waiting they run k8s/checks.py stuck every K8S_POLL_S seconds (5) and stop at the
# first pod or PVC that cannot recover by itself (within K8S_STUCK_S, 90 s, for unschedulable pods
# and Pending PVCs), printing the object, the reason and the next command. K8S_TIMEOUT_S (1800)
# bounds each wait otherwise.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly TIMEOUT_S="${K8S_TIMEOUT_S:-1800}"
readonly POLL_S="${K8S_POLL_S:-5}"
readonly IMAGE_IN_MANIFESTS="ghcr.io/example/mlops"
# checks.py reads YAML: the project's venv has PyYAML (make venv).
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
readonly PYTHON

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# Writes $WORK_DIR/kustomization.yaml: the overlay with the image replaced.
write_kustomization() {
  local overlay="$1" image_ref="$2"
  local image="${image_ref%:*}" tag="${image_ref##*:}"
  [[ -d "$REPO_ROOT/k8s/overlays/$overlay" ]] || { echo "no overlay k8s/overlays/$overlay" >&2; exit 2; }
  [[ "$image_ref" == *:* && -n "$tag" && "$tag" != */* ]] || { echo "image must be NAME:TAG, got $image_ref" >&2; exit 2; }
  # kustomize accepts only relative paths to other kustomizations.
  local rel
  rel="$(realpath --relative-to="$WORK_DIR" "$REPO_ROOT/k8s/overlays/$overlay")"
  cat >"$WORK_DIR/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
images:
  - name: $IMAGE_IN_MANIFESTS
    newName: $image
    newTag: "$tag"
EOF
}

namespace_of() {
  awk '$1 == "namespace:" { print $2; exit }' "$REPO_ROOT/k8s/overlays/$1/kustomization.yaml"
}

preflight() {
  kubectl kustomize "$WORK_DIR" >"$WORK_DIR/rendered.yaml"
  "$PYTHON" "$REPO_ROOT/k8s/checks.py" preflight "$WORK_DIR/rendered.yaml" \
    "$REPO_ROOT/k8s/overlays/$OVERLAY/settings.env" "$NAMESPACE" "$IMAGE_REF" ||
    { echo "pre-flight failed: nothing was applied" >&2; exit 1; }
}

# Polls until "$@" succeeds; fails at the first stuck pod or PVC, or after TIMEOUT_S.
wait_until() {
  local what="$1" deadline=$((SECONDS + TIMEOUT_S))
  shift
  until "$@"; do
    "$PYTHON" "$REPO_ROOT/k8s/checks.py" stuck "$NAMESPACE" || { echo "$what: stopped, see above" >&2; return 1; }
    ((SECONDS < deadline)) || { echo "$what: not done after ${TIMEOUT_S}s" >&2; return 1; }
    sleep "$POLL_S"
  done
  echo "$what: done"
}

rolled_out() {
  kubectl rollout status "$1" -n "$NAMESPACE" --timeout=1s >/dev/null 2>&1
}

# Succeeds once Job $1 is complete; exits, with its last log lines, once it has failed.
job_complete() {
  local conditions
  conditions="$(kubectl get job "$1" -n "$NAMESPACE" \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')"
  case " $conditions " in
    *" Complete "*) return 0 ;;
    *" Failed "*)
      echo "job/$1 failed; its last log lines (all: kubectl -n $NAMESPACE logs job/$1 --all-containers):" >&2
      kubectl logs "job/$1" -n "$NAMESPACE" --all-containers --tail=50 >&2 || true
      exit 1
      ;;
  esac
  return 1
}

run_job() {
  local step="$1"
  kubectl delete job -n "$NAMESPACE" -l "mlops/step=$step" --ignore-not-found --wait=true
  kubectl apply -k "$WORK_DIR" -l "mlops/step=$step"
  wait_until "job/$step" job_complete "$step"
}

# Everything but the Jobs and what waits for one; then every workload except the model server,
# which becomes ready only once a champion exists (after promote).
apply_platform() {
  kubectl apply -k "$WORK_DIR" -l '!mlops/step,!mlops/after'
  local workload
  for workload in $(kubectl get deployments,statefulsets -n "$NAMESPACE" -o name); do
    [[ "$workload" == "deployment.apps/model-server" || "$workload" == "deployment.apps/mlflow" ]] && continue
    wait_until "$workload" rolled_out "$workload"
  done
  run_job mlflow-setup
  kubectl apply -k "$WORK_DIR" -l 'mlops/after=mlflow-setup'
  wait_until "deployment.apps/mlflow" rolled_out deployment/mlflow
}

main() {
  (($# >= 3)) || usage
  local command="$1"
  OVERLAY="$2" IMAGE_REF="$3"
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT
  write_kustomization "$OVERLAY" "$IMAGE_REF"
  NAMESPACE="$(namespace_of "$OVERLAY")"
  case "$command" in
    render) kubectl kustomize "$WORK_DIR" ;;
    namespace) kubectl apply -k "$WORK_DIR" -l 'pod-security.kubernetes.io/enforce' ;;
    apply)
      preflight
      apply_platform
      for step in prepare train promote; do run_job "$step"; done
      wait_until "deployment.apps/model-server" rolled_out deployment/model-server
      ;;
    job)
      (($# == 4)) || usage
      preflight
      if [[ "$4" == tune ]]; then
        # Workers run trials only; one pod registers the best trial; promote judges it.
        for step in tune tune-register promote; do run_job "$step"; done
      else
        run_job "$4"
      fi
      ;;
    *) usage ;;
  esac
}

main "$@"
