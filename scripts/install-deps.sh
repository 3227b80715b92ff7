#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build and run keelson.
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
command -v iptables >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables) # the proxy's nftables mode (--proxy-mode=nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] || command -v busybox >/dev/null || need+=(busybox-static)
# e2e/storage's capacity test loop-mounts a btrfs filesystem with quotas.
command -v mkfs.btrfs >/dev/null || need+=(btrfs-progs)
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
	echo "install-deps: Go is missing; install go1.26.8 into /usr/local/go" >&2
	exit 1
fi
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: missing ${need[*]}; run as root or install them" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q "${need[@]}"
fi
