#!/usr/bin/env bash
# bench-scale.sh: kwok-simulated nodes and a clusterloader2-style load
# against a 3-server keelson cluster on 127.0.0.1-3, then the same against
# upstream etcd + kube-apiserver + kube-controller-manager + kube-scheduler,
# and both sides' SLO tables side by side (see bench/README.md).
#
# Builds what is missing, once, into bin/ (scripts/build-refs.sh):
# kube-apiserver-ref, kube-scheduler-ref, kube-controller-manager-ref,
# etcd-ref and kwok-ref with its stages file (sigs.k8s.io/kwok v0.8.0
# through the bench/kwokref module).
# bin/keelson must already exist (`make build`). Root is not needed. Extra
# arguments go to scalebench, e.g. a small run:
#   scripts/bench-scale.sh -nodes 50 -pods-per-node 10 -rate 20
# Environment: KEELSON_BIN overrides the keelson binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/bin"
keelson_bin="${KEELSON_BIN:-$bin/keelson}"

if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-scale: $keelson_bin not found; run 'make build' first (or set KEELSON_BIN)" >&2
	exit 1
fi
scripts/build-refs.sh kube-apiserver kube-scheduler kube-controller-manager etcd kwok
if [[ "${BENCH_SCALE_BUILD_ONLY:-}" != "" ]]; then
	exit 0
fi

exec go run ./bench/scalebench -keelson-bin "$keelson_bin" \
	-apiserver-bin "$bin/kube-apiserver-ref" -etcd-bin "$bin/etcd-ref" \
	-kcm-bin "$bin/kube-controller-manager-ref" -scheduler-bin "$bin/kube-scheduler-ref" \
	-kwok-bin "$bin/kwok-ref" -kwok-config "$bin/kwok-stages.yaml" "$@"
