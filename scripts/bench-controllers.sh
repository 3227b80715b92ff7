#!/usr/bin/env bash
# bench-controllers.sh: memory of keelson's controller plugins together vs
# upstream kube-controller-manager with the same controllers and workload.
# Builds bin/kube-controller-manager-ref (k8s.io/kubernetes from the module
# graph, with the Makefile's version stamp) once; bin/keelson must exist.
# Extra arguments go to ctrlmembench (e.g. -deployments 10 for a quick run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"
kcm_bin="${KCM_BIN:-$root/bin/kube-controller-manager-ref}"
if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-controllers: $keelson_bin not found; run 'make build' first" >&2
	exit 1
fi
if [[ ! -x "$kcm_bin" ]]; then
	ldflags="$(make -s --no-print-directory -f Makefile --eval='ldf: ; @echo '"'"'$(VERSION_LDFLAGS)'"'"'' ldf)"
	echo "bench-controllers: building $kcm_bin (k8s.io/kubernetes/cmd/kube-controller-manager from the module graph of bench/kcmref; minutes the first time)" >&2
	# kube-controller-manager needs modules keelson's go.mod does not have
	# (cadvisor, the CSI spec, ...): bench/kcmref is the module to build it in.
	go build -C bench/kcmref -trimpath -ldflags "$ldflags" -o "$kcm_bin" k8s.io/kubernetes/cmd/kube-controller-manager
fi
exec go run ./bench/ctrlmembench -keelson-bin "$keelson_bin" -kcm-bin "$kcm_bin" "$@"
