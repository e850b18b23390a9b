#!/usr/bin/env bash
# For users with Docker: a kind cluster with shadowroute installed from the chart, and
# the example ShadowRoute applied. (The local test cluster of hack/cluster.py needs no
# Docker; this is the way to see the operator run as a real pod.)
#
#   hack/kind-up.sh            # create (or reuse) the cluster, build, install, apply the example
#   KIND_CLUSTER=x hack/kind-up.sh
#   hack/kind-up.sh down       # delete the kind cluster
#
# Needs: docker, kind, kubectl; helm on PATH or built by hack/build.sh (make build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster="${KIND_CLUSTER:-shadowroute}"
image="${IMAGE:-shadowroute/operator:dev}"
ns_operator="${OPERATOR_NAMESPACE:-shadowroute-system}"
ns_demo="${DEMO_NAMESPACE:-demo}"
# The example names a placeholder image; in kind the pods really run, so it gets a
# real one that serves on 8080 (the example's targetPort), and a newer one to roll to.
demo_image="${DEMO_IMAGE:-nginxinc/nginx-unprivileged:1.27-alpine}"
demo_image_next="${DEMO_IMAGE_NEXT:-nginxinc/nginx-unprivileged:1.28-alpine}"

die() { printf 'kind-up: %s\n' "$*" >&2; exit 1; }
log() { printf '[kind-up] %s\n' "$*" >&2; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH (this script is for machines with Docker; see docs/quickstart.md)"
done
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (is it running, may you use it?)"

helm="$(command -v helm || true)"
if [ -z "$helm" ]; then
  # shellcheck source=versions.env
  source "$root/hack/versions.env"
  helm="${SHADOWROUTE_CACHE:-$HOME/.cache/shadowroute}/bin/helm-$HELM_VERSION"
  [ -x "$helm" ] || die "helm not found: install it, or run 'make build' to build it from its Go module"
fi

if [ "${1:-up}" = "down" ]; then
  kind delete cluster --name "$cluster"
  exit 0
fi

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "kind cluster $cluster exists: reusing it"
else
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 120s
fi
ctx="kind-$cluster"

log "building $image"
docker build -t "$image" "$root"
log "loading $image into the kind nodes"
kind load docker-image "$image" --name "$cluster"

log "installing the chart into $ns_operator"
# The CRD ships in the chart's crds/ (installed on first install only); apply it on
# every run so that an upgrade also gets a changed CRD.
kubectl --context "$ctx" apply --server-side --force-conflicts -f "$root/charts/shadowroute/crds/"
"$helm" upgrade --install shadowroute "$root/charts/shadowroute" \
  --kube-context "$ctx" --namespace "$ns_operator" --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --wait --timeout 180s

log "applying the example into namespace $ns_demo"
kubectl --context "$ctx" create namespace "$ns_demo" --dry-run=client -o yaml | kubectl --context "$ctx" apply -f -
sed "s|image: registry.example/checkout:1.0.0|image: $demo_image|" "$root/examples/canary-basic.yaml" |
  kubectl --context "$ctx" apply -n "$ns_demo" -f -
kubectl --context "$ctx" wait -n "$ns_demo" --for=condition=Ready --timeout=180s shadowroute/checkout

cat <<MSG

shadowroute runs in kind cluster "$cluster" (context $ctx).
  kubectl --context $ctx get shadowroutes -n $ns_demo
Roll out a new version and watch it (pip install -e . gives you the kubectl plugin):
  kubectl --context $ctx -n $ns_demo patch sr checkout --type=json \\
    -p '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"$demo_image_next"}]'
  kubectl shadowroute status checkout -n $ns_demo --context $ctx --watch
  kubectl --context $ctx -n $ns_operator logs deploy/shadowroute -f
Delete it all with: hack/kind-up.sh down
MSG
