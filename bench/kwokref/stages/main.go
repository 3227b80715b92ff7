// Command stages writes kwok's default stages, as kwokctl configures them
// for a cluster with node leases, to stdout as one kwok config file:
// node-initialize, node-heartbeat-with-lease (Ready kept by the Lease in
// kube-node-lease; the Node status itself is refreshed rarely), and the
// fast pod stages (pod-ready, pod-complete, pod-delete). The YAML is kwok's
// own, embedded in its module at the pinned version.
package main

import (
	"fmt"
	"os"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
)

func main() {
	docs := []string{
		nodefast.DefaultNodeInit,
		nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	for i, d := range docs {
		docs[i] = strings.TrimSpace(d)
	}
	if _, err := fmt.Println(strings.Join(docs, "\n---\n")); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		os.Exit(1)
	}
}
