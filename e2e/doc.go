// Package e2e holds Keelson's process-level integration tests: they start the
// real keelson binary (KEELSON_BIN, or bin/keelson; `make build` makes it) on
// free loopback ports and temporary data dirs, and check what a user of the
// etcd API, kubectl or client-go would notice, including across kill -9 and
// restart. The package has no non-test code; run it with
// `go test ./e2e/ -count=1 -v`.
package e2e
