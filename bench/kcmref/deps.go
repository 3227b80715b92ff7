// Package kcmref pins the module graph from which scripts/bench-workloads.sh
// builds the reference kube-controller-manager, unmodified:
//
//	go build -C bench/kcmref k8s.io/kubernetes/cmd/kube-controller-manager
//
// The workload benchmark (bench/workloadbench) runs it against a keelson
// server whose own controllers are disabled. It lives in its own module so
// that kube-controller-manager's dependency graph never enters keelson's
// go.mod or `go build ./...`.
package kcmref

import (
	// The upstream main package cannot be imported; its app package
	// brings the same graph.
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)
