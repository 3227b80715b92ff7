// Package conformance runs the upstream Kubernetes conformance suite
// (e2e.test v1.37.2, its [Conformance] specs) against a real Keelson
// cluster, offline: the images the specs use are assembled here from
// upstream busybox and binaries built from their Go sources, imported into
// every node and served by an in-process registry on the test network.
// The report counts passed, failed and skipped specs per SIG and lists each
// failure with its first error line.
//
// `make conformance` builds e2e.test and the image binaries (busybox from
// its C source, with conformance/build-busybox.sh) into .conformance/ and
// runs TestConformance with KEELSON_CONFORMANCE_DIR set; without it the
// test is skipped (make test runs the report's and the images' unit tests
// only).
package conformance
