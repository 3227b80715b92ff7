#!/usr/bin/env bash
# bench-scale.sh: kwok-simulated nodes and a clusterloader2-style load
# against a 3-server keelson cluster on 127.0.0.1-3, then the same against
# upstream etcd + kube-apiserver + kube-controller-manager + kube-scheduler,
# and both sides' SLO tables side by side (see bench/README.md).
#
# Builds what is missing, once, into bin/: kube-apiserver-ref and
# kube-scheduler-ref (k8s.io/kubernetes from keelson's module graph, with
# the Makefile's version stamp), kube-controller-manager-ref (through the
# bench/kcmref module), etcd-ref (bench/etcdref) and kwok-ref with its
# stages file (sigs.k8s.io/kwok v0.8.0 through the bench/kwokref module).
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
ldflags="$(make -s --no-print-directory -f Makefile --eval='bench-scale-ldflags: ; @echo '"'"'$(VERSION_LDFLAGS)'"'"'' bench-scale-ldflags)"
build() { # build OUTPUT MODULE-DIR PACKAGE [LDFLAGS]
	local out="$1" dir="$2" pkg="$3" ld="${4:-}"
	[[ -x "$out" ]] && return 0
	echo "bench-scale: building $out ($pkg in the module graph of $dir; minutes the first time)" >&2
	mkdir -p "$(dirname "$out")"
	go build -C "$dir" -trimpath -ldflags "$ld" -o "$out" "$pkg"
}
build "$bin/kube-apiserver-ref" . k8s.io/kubernetes/cmd/kube-apiserver "$ldflags"
build "$bin/kube-scheduler-ref" . k8s.io/kubernetes/cmd/kube-scheduler "$ldflags"
build "$bin/kube-controller-manager-ref" bench/kcmref k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags"
build "$bin/etcd-ref" bench/etcdref .
build "$bin/kwok-ref" bench/kwokref sigs.k8s.io/kwok/cmd/kwok
if [[ ! -s "$bin/kwok-stages.yaml" ]]; then
	go run -C bench/kwokref ./stages > "$bin/kwok-stages.yaml"
fi
if [[ "${BENCH_SCALE_BUILD_ONLY:-}" != "" ]]; then
	exit 0
fi

exec go run ./bench/scalebench -keelson-bin "$keelson_bin" \
	-apiserver-bin "$bin/kube-apiserver-ref" -etcd-bin "$bin/etcd-ref" \
	-kcm-bin "$bin/kube-controller-manager-ref" -scheduler-bin "$bin/kube-scheduler-ref" \
	-kwok-bin "$bin/kwok-ref" -kwok-config "$bin/kwok-stages.yaml" "$@"
