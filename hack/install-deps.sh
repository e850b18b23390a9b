#!/usr/bin/env bash
# Install the system packages the local cluster needs: Debian's Prometheus (for
# promtool and the analysis tests' second Prometheus; the cluster's own is built by
# hack/build.sh), iproute2 and util-linux (the data plane's network namespace).
# Idempotent: does nothing when they are present. Never starts the packaged services.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "[deps] installing ${need[*]} from Debian" >&2
# A policy-rc.d that forbids starting services, so the package's own Prometheus
# never starts on port 9090 behind our back; removed again afterwards.
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created=1
fi
trap '[ $created -eq 1 ] && $sudo rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
