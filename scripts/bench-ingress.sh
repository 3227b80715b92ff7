#!/usr/bin/env bash
# bench-ingress.sh: what the ingress data plane adds to a request, keelson's
# proxy and Traefik v3 side by side against the same loopback backend hit
# directly (see bench/README.md).
#
# Builds bin/traefik-ref (Traefik v3.6.12 from the module proxy, through the
# bench/traefikref module) if it is missing; if that build fails the bench
# still runs and says that the Traefik column is skipped. Root is not
# needed. Extra arguments go to ingressbench, e.g.
#   scripts/bench-ingress.sh -procs 2 -duration 5s -json bench/out/ingress.json
# Environment: TRAEFIK_BIN overrides the Traefik binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
traefik_bin="${TRAEFIK_BIN:-$root/bin/traefik-ref}"

if [[ ! -x "$traefik_bin" ]]; then
	echo "bench-ingress: building $traefik_bin (Traefik v3.6.12 from the module proxy; ~15 min of CPU once, far longer on a loaded machine)" >&2
	mkdir -p "$(dirname "$traefik_bin")"
	if ! go build -C bench/traefikref -trimpath -o "$traefik_bin" github.com/traefik/traefik/v3/cmd/traefik; then
		echo "bench-ingress: building Traefik failed (above); running without the Traefik column" >&2
	fi
fi

exec go run ./bench/ingressbench -traefik-bin "$traefik_bin" "$@"
