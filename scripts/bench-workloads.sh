#!/usr/bin/env bash
# bench-workloads.sh: keelson's workload plugins against upstream
# kube-controller-manager, each on a fresh keelson server, side by side
# (see bench/README.md): a Deployment of 1,000 replicas created and rolled
# to a new image, an Indexed Job of 1,000 completions, and a DaemonSet over
# 1,000 API-created nodes rolled to a new image. With arguments, one run of
# workloadbench with them, e.g.
#   scripts/bench-workloads.sh -workload job -size 300 -json bench/out/job.json
#
# Builds bin/kube-controller-manager-ref (k8s.io/kubernetes/cmd/kube-controller-manager
# from the module proxy, through the bench/kcmref module, with the
# Makefile's version stamp) if it is missing; bin/keelson must already exist
# (`make build`).
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

if [[ $# -gt 0 ]]; then
	exec go run ./bench/workloadbench -keelson-bin "$keelson_bin" -kcm-bin "$kcm_bin" "$@"
fi
for w in deployment job daemonset; do
	go run ./bench/workloadbench -keelson-bin "$keelson_bin" -kcm-bin "$kcm_bin" -workload "$w"
done
