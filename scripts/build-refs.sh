#!/usr/bin/env bash
# build-refs.sh NAME...: builds the upstream reference binaries the
# benchmarks compare keelson with into bin/, each only if missing:
#   kube-apiserver, kube-scheduler  k8s.io/kubernetes from keelson's module graph
#   kube-controller-manager         k8s.io/kubernetes through bench/kcmref
#   etcd                            go.etcd.io/etcd/server through bench/etcdref
#   kwok                            sigs.k8s.io/kwok through bench/kwokref, with its stages file
# as bin/NAME-ref; the Kubernetes binaries get the Makefile's version stamp.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="$root/bin"
ldflags="$(make -s --no-print-directory -f Makefile --eval='build-refs-ldflags: ; @echo '"'"'$(VERSION_LDFLAGS)'"'"'' build-refs-ldflags)"
build() { # build OUTPUT MODULE-DIR PACKAGE [LDFLAGS]
	local out="$1" dir="$2" pkg="$3" ld="${4:-}"
	[[ -x "$out" ]] && return 0
	echo "build-refs: building $out ($pkg in the module graph of $dir; minutes the first time)" >&2
	mkdir -p "$(dirname "$out")"
	go build -C "$dir" -trimpath -ldflags "$ld" -o "$out" "$pkg"
}
for name in "$@"; do
	case "$name" in
	kube-apiserver | kube-scheduler)
		build "$bin/$name-ref" . "k8s.io/kubernetes/cmd/$name" "$ldflags" ;;
	kube-controller-manager)
		# It needs modules keelson's go.mod does not have (cadvisor, the
		# CSI spec, ...): bench/kcmref is the module to build it in.
		build "$bin/$name-ref" bench/kcmref k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags" ;;
	etcd)
		build "$bin/etcd-ref" bench/etcdref . ;;
	kwok)
		build "$bin/kwok-ref" bench/kwokref sigs.k8s.io/kwok/cmd/kwok
		# Written anew if missing or from before it carried kwok's defaulted
		# KwokConfiguration (the scale bench sets its pod workers there).
		if [[ ! -s "$bin/kwok-stages.yaml" ]] || ! grep -q '^kind: KwokConfiguration$' "$bin/kwok-stages.yaml"; then
			go run -C bench/kwokref ./stages > "$bin/kwok-stages.yaml"
		fi ;;
	*)
		echo "build-refs: unknown binary $name (want kube-apiserver, kube-scheduler, kube-controller-manager, etcd or kwok)" >&2
		exit 2 ;;
	esac
done
