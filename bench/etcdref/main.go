// Command etcd-ref is an unmodified etcd server, built from the Go module
// proxy, that the store benchmark (bench/kvbench) runs as the reference
// against which keelson's etcd v3 API is measured.
//
// It lives in its own module so that the etcd server's dependency graph never
// enters keelson's go.mod or `go build ./...`.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
