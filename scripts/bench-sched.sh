#!/usr/bin/env bash
# bench-sched.sh: keelson's scheduler vs upstream kube-scheduler against the
# same keelson server, one after the other, side by side (see
# bench/README.md).
#
# Builds bin/kube-scheduler-ref (k8s.io/kubernetes/cmd/kube-scheduler from
# the module graph, with the Makefile's version stamp) if it is missing;
# bin/keelson must already exist (`make build`). Extra arguments go to
# schedbench, e.g.
#   scripts/bench-sched.sh -nodes 1000 -pods 2000 -json bench/out/sched.json
# Environment: KEELSON_BIN, KUBE_SCHEDULER_BIN override the binaries.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"
scheduler_bin="${KUBE_SCHEDULER_BIN:-$root/bin/kube-scheduler-ref}"

if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-sched: $keelson_bin not found; run 'make build' first (or set KEELSON_BIN)" >&2
	exit 1
fi
if [[ ! -x "$scheduler_bin" ]]; then
	# The Makefile's own VERSION_LDFLAGS, as for the API bench's
	# kube-apiserver: kube-scheduler refuses an unparseable version.
	ldflags="$(make -s --no-print-directory -f Makefile --eval='bench-sched-ldflags: ; @echo '"'"'$(VERSION_LDFLAGS)'"'"'' bench-sched-ldflags)"
	echo "bench-sched: building $scheduler_bin (k8s.io/kubernetes/cmd/kube-scheduler from the module graph; minutes the first time)" >&2
	mkdir -p "$(dirname "$scheduler_bin")"
	go build -trimpath -ldflags "$ldflags" -o "$scheduler_bin" k8s.io/kubernetes/cmd/kube-scheduler
fi

# schedbench re-executes itself to run keelson's scheduler, so build it
# rather than `go run` it.
bench_bin="$(mktemp -d)/schedbench"
trap 'rm -rf "$(dirname "$bench_bin")"' EXIT
go build -o "$bench_bin" ./bench/schedbench
"$bench_bin" -keelson-bin "$keelson_bin" -kube-scheduler-bin "$scheduler_bin" "$@"
