#!/bin/sh
# Copies the standard-channel CRDs (not the ValidatingAdmissionPolicy file)
# of the sigs.k8s.io/gateway-api version go.mod pins.
set -eu
dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
rm -f standard/*.yaml
for f in "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
	case "$f" in *_vap_*) continue ;; esac
	cp "$f" standard/
done
chmod 0644 standard/*.yaml
