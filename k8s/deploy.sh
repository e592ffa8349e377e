#!/usr/bin/env bash
# Deploy an overlay to the cluster of kubectl's current context; called by `make k8s-*`.
#
#   k8s/deploy.sh render OVERLAY IMAGE:TAG        print the manifests that would be applied
#   k8s/deploy.sh apply  OVERLAY IMAGE:TAG        apply, then run prepare -> train -> promote
#   k8s/deploy.sh job    OVERLAY IMAGE:TAG STEP   (re)run one pipeline Job (prepare|train|promote|tune)
#
# The overlays name the image ghcr.io/example/mlops; a throwaway kustomization on top of the overlay
# swaps in IMAGE:TAG, so nothing in the repository is edited. Pipeline Jobs (label mlops/step) are
# applied one at a time, in order, because a Job's pod template cannot change once it exists.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly TIMEOUT_S="${K8S_TIMEOUT_S:-1800}"
readonly IMAGE_IN_MANIFESTS="ghcr.io/example/mlops"

usage() {
  sed -n '2,7p' "${BASH_SOURCE[0]}" >&2
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

# Waits for Job $1 to complete; prints its logs and fails if it failed or timed out.
wait_for_job() {
  local job="$1" deadline=$((SECONDS + TIMEOUT_S)) conditions
  while ((SECONDS < deadline)); do
    conditions="$(kubectl get job "$job" -n "$NAMESPACE" \
      -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type} {end}')"
    case " $conditions " in
      *" Complete "*) echo "job/$job complete"; return 0 ;;
      *" Failed "*) break ;;
    esac
    sleep 5
  done
  echo "job/$job failed or timed out after ${TIMEOUT_S}s; its last log lines:" >&2
  kubectl logs "job/$job" -n "$NAMESPACE" --all-containers --tail=50 >&2 || true
  return 1
}

run_job() {
  local step="$1"
  kubectl delete job -n "$NAMESPACE" -l "mlops/step=$step" --ignore-not-found --wait=true
  kubectl apply -k "$WORK_DIR" -l "mlops/step=$step"
  wait_for_job "$step"
}

# Everything but the pipeline Jobs; then wait for every workload except the model server, which
# becomes ready only once a champion exists (after promote).
apply_platform() {
  kubectl apply -k "$WORK_DIR" -l '!mlops/step'
  local workload
  for workload in $(kubectl get deployments,statefulsets -n "$NAMESPACE" -o name); do
    [[ "$workload" == "deployment.apps/model-server" ]] && continue
    kubectl rollout status "$workload" -n "$NAMESPACE" --timeout="${TIMEOUT_S}s"
  done
}

main() {
  (($# >= 3)) || usage
  local command="$1" overlay="$2" image_ref="$3"
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT
  write_kustomization "$overlay" "$image_ref"
  NAMESPACE="$(namespace_of "$overlay")"
  case "$command" in
    render) kubectl kustomize "$WORK_DIR" ;;
    apply)
      apply_platform
      for step in prepare train promote; do run_job "$step"; done
      kubectl rollout status deployment/model-server -n "$NAMESPACE" --timeout="${TIMEOUT_S}s"
      ;;
    job)
      (($# == 4)) || usage
      run_job "$4"
      ;;
    *) usage ;;
  esac
}

main "$@"
