// Package kwokref pins the module graph from which scripts/bench-scale.sh
// builds kwok (sigs.k8s.io/kwok v0.8.0), unmodified:
//
//	go build -C bench/kwokref sigs.k8s.io/kwok/cmd/kwok
//
// and the stages program beside it, which writes kwok's own default node
// and pod stages (the ones kwokctl installs) as one kwok config file. It
// lives in its own module so that kwok's dependency graph (client-go
// v0.36) never enters keelson's go.mod.
package kwokref

import (
	// The upstream main package cannot be imported; its cmd package
	// brings the same graph.
	_ "sigs.k8s.io/kwok/pkg/kwok/cmd"
)
