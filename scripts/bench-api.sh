#!/usr/bin/env bash
# bench-api.sh: keelson's Kubernetes API vs upstream kube-apiserver on a real
# etcd, one after the other, side by side (see bench/README.md).
#
# Builds bin/kube-apiserver-ref (k8s.io/kubernetes/cmd/kube-apiserver from
# the module graph, with the Makefile's version stamp) and bin/etcd-ref if
# they are missing; bin/keelson must already exist (`make build`). Extra
# arguments go to apibench, e.g.
#   scripts/bench-api.sh -json bench/out/api.json
# Environment: KEELSON_BIN, APISERVER_BIN, ETCD_BIN override the binaries.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"
apiserver_bin="${APISERVER_BIN:-$root/bin/kube-apiserver-ref}"
etcd_bin="${ETCD_BIN:-$root/bin/etcd-ref}"

if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-api: $keelson_bin not found; run 'make build' first (or set KEELSON_BIN)" >&2
	exit 1
fi
if [[ ! -x "$apiserver_bin" ]]; then
	# The Makefile's own VERSION_LDFLAGS, so both API servers report the same
	# version (see core/apiserver/VERSION_LDFLAGS.md); main.keelsonVersion
	# does not exist in kube-apiserver and the linker ignores it.
	ldflags="$(make -s --no-print-directory -f Makefile --eval='bench-api-ldflags: ; @echo '"'"'$(VERSION_LDFLAGS)'"'"'' bench-api-ldflags)"
	echo "bench-api: building $apiserver_bin (k8s.io/kubernetes/cmd/kube-apiserver from the module graph; minutes the first time)" >&2
	mkdir -p "$(dirname "$apiserver_bin")"
	go build -trimpath -ldflags "$ldflags" -o "$apiserver_bin" k8s.io/kubernetes/cmd/kube-apiserver
fi
if [[ ! -x "$etcd_bin" ]]; then
	echo "bench-api: building $etcd_bin (etcd server v3.7.0 from the module proxy, ~2 min once)" >&2
	mkdir -p "$(dirname "$etcd_bin")"
	go build -C bench/etcdref -o "$etcd_bin" .
fi

exec go run ./bench/apibench -keelson-bin "$keelson_bin" -apiserver-bin "$apiserver_bin" -etcd-bin "$etcd_bin" "$@"
