#!/usr/bin/env bash
# What validating deploy/k8s offline takes, fetched once from package registries into $OMS_STATE_DIR/tools/k8s
# and printed as KEY=VALUE lines (tests/unit/test_k8s_manifests.py reads them; deploy/k8s/validate.sh uses them):
#   KUSTOMIZE    the command that renders a kustomization: `kubectl kustomize` when kubectl is there (it
#                bundles kustomize 5.5), else `kustomize build`, kustomize 5.5 built with `go install`
#   KUBECONFORM  kubeconform, built with `go install` (Go module proxy)
#   SCHEMA       a kubeconform schema location (two lines):
#                - Kubernetes' own kinds (1.32) from PyPI's kubernetes-validate wheel (pip download);
#                - CloudNativePG's and KEDA's CRDs from their Go modules (go mod download: config/crd/bases);
#                - Strimzi's CRDs generated with Strimzi's own generator from its API classes (Maven Central,
#                  deploy/k8s/strimzi/pom.xml; the generator needs Java 21+): Strimzi publishes the CRD files
#                  on no package registry.
# Any of them missing is an error: the test then fails rather than validating nothing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

KUBECONFORM_VERSION=v0.6.7
KUSTOMIZE_VERSION=v5.5.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VERSION=v1.32.0
CNPG_MODULE=github.com/cloudnative-pg/cloudnative-pg@v1.25.1
KEDA_MODULE=github.com/kedacore/keda/v2@v2.16.1
# The core kinds deploy/k8s uses; a kind not here has no schema, which kubeconform reports as an error.
CORE_KINDS="deployment-apps-v1 service-v1 poddisruptionbudget-policy-v1 job-batch-v1 configmap-v1 namespace-v1"
STRIMZI_KINDS="kafka.Kafka nodepool.KafkaNodePool topic.KafkaTopic user.KafkaUser"

DIR=$OMS_STATE_DIR/tools/k8s
PYTHON=${PYTHON:-$OMS_ROOT/.venv/bin/python}
SCHEMA_SOURCES="$KUBERNETES_VALIDATE_VERSION $KUBERNETES_VERSION $CORE_KINDS $CNPG_MODULE $KEDA_MODULE $(
  sed -n 's:.*<\(strimzi\|crd-generator\).version>\(.*\)</.*:\2:p' "$OMS_ROOT/deploy/k8s/strimzi/pom.xml") $STRIMZI_KINDS"

need_go() {
  export PATH=$PATH:/usr/local/go/bin
  need_command go golang-go
}

go_tool() {  # go_tool NAME PACKAGE VERSION
  local bin=$DIR/bin/$1
  if [ ! -x "$bin" ] || [ "$(cat "$bin.version" 2>/dev/null)" != "$3" ]; then
    need_go
    log "building $1 $3 (go install)"
    GOBIN=$DIR/bin go install "$2@$3" >&2
    echo "$3" >"$bin.version"
  fi
  echo "$bin"
}

module_zip() {  # the path of a Go module's zip, downloaded into the module cache
  need_go
  go mod download -json "$1" | "$PYTHON" -c 'import json, sys; d = json.load(sys.stdin); print(d["Zip"]) if "Zip" in d else sys.exit(d.get("Error", d))'
}

crd_files() {  # crd_files ZIP OUT FILE...: the named files of config/crd/bases, extracted into OUT
  local zip=$1 out=$2; shift 2
  "$PYTHON" - "$zip" "$out" "$@" <<'PY'
import sys, zipfile
from pathlib import Path
archive, out, names = zipfile.ZipFile(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
for name in names:
    member = next(m for m in archive.namelist() if m.endswith(f"/config/crd/bases/{name}"))
    (out / name).write_bytes(archive.read(member))
PY
}

java21() {  # a Java 21 or newer, which Strimzi's CRD generator needs
  local candidate version
  for candidate in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    version=$("$candidate" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    if [ "${version:-0}" -ge 21 ] 2>/dev/null; then echo "$candidate"; return; fi
  done
  die "Strimzi's CRD generator needs Java 21 or newer: none in JAVA_HOME, on PATH or in /usr/lib/jvm"
}

strimzi_crds() {  # strimzi_crds OUT: Kafka, KafkaNodePool, KafkaTopic, KafkaUser CRDs (v1beta2) into OUT
  local out=$1 kind arguments=()
  need_command mvn maven
  mvn -q -B -Dstyle.color=never -f "$OMS_ROOT/deploy/k8s/strimzi/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$out/lib" -DincludeScope=runtime >&2
  for kind in $STRIMZI_KINDS; do arguments+=("io.strimzi.api.kafka.model.$kind=$out/strimzi-${kind#*.}.yaml"); done
  "$(java21)" -cp "$out/lib/*" io.strimzi.crdgenerator.CrdGenerator --crd-api-version v1 --api-versions v1beta2 \
    --storage-version v1beta2 --target-kube 1.16+ --yaml "${arguments[@]}" 2> >(grep -v '^SLF4J' >&2)
  rm -rf "$out/lib"
}

schemas() {
  local schemas=$DIR/schemas tmp
  if [ "$(cat "$schemas/.complete" 2>/dev/null)" != "$SCHEMA_SOURCES" ]; then
    mkdir -p "$DIR" && tmp=$(mktemp -d "$DIR/.fetch.XXXXXX")
    log "fetching Kubernetes and CRD schemas into $schemas"
    "$PYTHON" -m pip download -q --no-deps "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" -d "$tmp" >&2
    # shellcheck disable=SC2086
    "$PYTHON" "$OMS_ROOT/deploy/k8s/schemas.py" core "$tmp"/kubernetes_validate-*.whl "$KUBERNETES_VERSION" \
      "$tmp/out" $CORE_KINDS
    crd_files "$(module_zip "$CNPG_MODULE")" "$tmp" postgresql.cnpg.io_clusters.yaml
    crd_files "$(module_zip "$KEDA_MODULE")" "$tmp" keda.sh_scaledobjects.yaml keda.sh_triggerauthentications.yaml
    strimzi_crds "$tmp"
    "$PYTHON" "$OMS_ROOT/deploy/k8s/schemas.py" crd "$tmp/out" "$tmp"/*.yaml
    echo "$SCHEMA_SOURCES" >"$tmp/out/.complete"
    rm -rf "$schemas" && mv "$tmp/out" "$schemas" && rm -rf "$tmp"
  fi
  echo "SCHEMA=$schemas/core/{{ .ResourceKind }}{{ .KindSuffix }}.json"
  echo "SCHEMA=$schemas/crd/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
}

kustomize() {
  if command -v kubectl >/dev/null 2>&1; then echo "kubectl kustomize"; return; fi
  echo "$(go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION") build"
}

mkdir -p "$DIR"
exec 8>"$DIR/.lock" && flock 8  # test sessions sharing the state directory fetch once
echo "KUBECONFORM=$(go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")"
echo "KUSTOMIZE=$(kustomize)"
schemas
