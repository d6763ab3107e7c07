#!/usr/bin/env bash
# Renders each overlay and validates every object against its schema, strictly and offline (what
# tests/unit/test_k8s_manifests.py does, among other checks): deploy/k8s/validate.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
schemas=()
while IFS='=' read -r key value; do
  case $key in
    KUBECONFORM) kubeconform=$value ;;
    KUSTOMIZE) kustomize=$value ;;
    SCHEMA) schemas+=(-schema-location "$value") ;;
  esac
done < <(./tools.sh)
for overlay in overlays/*/; do
  printf '%s: ' "$overlay"
  $kustomize "$overlay" | "$kubeconform" -strict -summary "${schemas[@]}" -
done
