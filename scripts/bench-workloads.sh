#!/usr/bin/env bash
# bench-workloads.sh: keelson's replicaset and deployment plugins against
# upstream kube-controller-manager, each on a fresh keelson server, side by
# side: a Deployment of 1,000 replicas created and rolled to a new image
# (see bench/README.md).
#
# Builds bin/kube-controller-manager-ref (k8s.io/kubernetes/cmd/kube-controller-manager
# from the module proxy, through the bench/kcmref module, with the
# Makefile's version stamp) if it is missing; bin/keelson must already exist
# (`make build`). Extra arguments go to workloadbench, e.g.
#   scripts/bench-workloads.sh -replicas 300 -json bench/out/workloads.json
# Environment: KEELSON_BIN, KCM_BIN override the binaries.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"
kcm_bin="${KCM_BIN:-$root/bin/kube-controller-manager-ref}"

if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-workloads: $keelson_bin not found; run 'make build' first (or set KEELSON_BIN)" >&2
	exit 1
fi
if [[ ! -x "$kcm_bin" ]]; then
	ldflags="$(make -s --no-print-directory -f Makefile --eval='bench-ldflags: ; @echo '"'"'$(VERSION_LDFLAGS)'"'"'' bench-ldflags)"
	echo "bench-workloads: building $kcm_bin (k8s.io/kubernetes/cmd/kube-controller-manager from the module graph of bench/kcmref; minutes the first time)" >&2
	mkdir -p "$(dirname "$kcm_bin")"
	go build -C bench/kcmref -trimpath -ldflags "$ldflags" -o "$kcm_bin" k8s.io/kubernetes/cmd/kube-controller-manager
fi

exec go run ./bench/workloadbench -keelson-bin "$keelson_bin" -kcm-bin "$kcm_bin" "$@"
