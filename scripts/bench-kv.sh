#!/usr/bin/env bash
# bench-kv.sh: keelson vs a real etcd, side by side (see bench/README.md).
#
# Builds bin/etcd-ref from the Go module proxy if it is missing; bin/keelson
# must already exist (`make build`). Extra arguments go to kvbench, e.g.
#   scripts/bench-kv.sh -json bench/out/kv.json -rounds 2
# Environment: ETCD_BIN, KEELSON_BIN override the binaries.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
etcd_bin="${ETCD_BIN:-$root/bin/etcd-ref}"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"

if [[ ! -x "$etcd_bin" ]]; then
	echo "bench-kv: building $etcd_bin (etcd server v3.7.0 from the module proxy, ~2 min once)" >&2
	mkdir -p "$(dirname "$etcd_bin")"
	go build -C bench/etcdref -o "$etcd_bin" .
fi
if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-kv: $keelson_bin not found; run 'make build' first (or set KEELSON_BIN)" >&2
	exit 1
fi

exec go run ./bench/kvbench -etcd-bin "$etcd_bin" -keelson-bin "$keelson_bin" "$@"
