// Package traefikref pins the module graph from which scripts/bench-ingress.sh
// builds Traefik v3 (github.com/traefik/traefik/v3 v3.6.12), unmodified, as
// a tool of this module:
//
//	go build -C bench/traefikref -o $PWD/bin/traefik-ref github.com/traefik/traefik/v3/cmd/traefik
//
// the peer that the ingress data-plane benchmark (bench/ingressbench) runs
// beside keelson's proxy. It lives in its own module so that Traefik's
// dependency graph never enters keelson's go.mod or `go build ./...`.
// go.mod repeats Traefik's own replace and exclude directives, which apply
// only to the main module.
//
// Why v3.6.12 and not the newer v3.7 releases: v3.7.x's ACME support
// (go-acme/lego v5, whose DNS providers every Traefik build links) and its
// go-http-auth fork need module versions that this machine's module proxy
// refuses (403), such as github.com/akamai/AkamaiOPEN-edgegrid-golang/v13
// v13.4.0, github.com/nrdcg/oci-go-sdk/common/v1065 v1065.124.0 and
// github.com/containous/go-http-auth v0.4.1-0.20260804094822-b975dcaa8c48
// (bench/README.md lists them all); v3.6.12's whole graph is served.
package traefikref
