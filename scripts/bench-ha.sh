#!/usr/bin/env bash
# bench-ha.sh: a 3-server keelson cluster on 127.0.0.1-3: leader failover
# time (kill -9 to the first successful write, 20 repetitions, through the
# Kubernetes API and through the etcd API) and ConfigMap create throughput
# against a single server (see bench/README.md).
#
# bin/keelson must already exist (`make build`). Extra arguments go to
# habench, e.g.
#   scripts/bench-ha.sh -json bench/out/ha.json
#   scripts/bench-ha.sh -reps 5 -throughput=false    # quick look
# Environment: KEELSON_BIN overrides the binary.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
keelson_bin="${KEELSON_BIN:-$root/bin/keelson}"

if [[ ! -x "$keelson_bin" ]]; then
	echo "bench-ha: $keelson_bin not found; run 'make build' first (or set KEELSON_BIN)" >&2
	exit 1
fi

exec go run ./bench/habench -keelson-bin "$keelson_bin" "$@"
