#!/usr/bin/env bash
# bench-controllers.sh: memory, idle and loaded, of keelson's controller
# plugins together vs upstream kube-controller-manager with the same
# controllers and workload (bench/ctrlmembench). With -scope control-plane:
# the whole control plane, keelson server and every plugin vs etcd +
# kube-apiserver + kube-controller-manager + kube-scheduler.
# Builds the upstream binaries into bin/ once (scripts/build-refs.sh);
# bin/keelson must exist. Extra arguments go to
# ctrlmembench (e.g. -deployments 10 for a quick run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"
if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-controllers: $keelson_bin not found; run 'make build' first" >&2
	exit 1
fi
scripts/build-refs.sh kube-controller-manager etcd kube-apiserver kube-scheduler
exec go run ./bench/ctrlmembench -keelson-bin "$keelson_bin" -kcm-bin "$root/bin/kube-controller-manager-ref" \
	-etcd-bin "$root/bin/etcd-ref" -apiserver-bin "$root/bin/kube-apiserver-ref" \
	-scheduler-bin "$root/bin/kube-scheduler-ref" "$@"
