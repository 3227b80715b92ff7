// Command stages writes kwok's default stages, as kwokctl configures them
// for a cluster with node leases, to stdout as one kwok config file:
// node-initialize, node-heartbeat-with-lease (Ready kept by the Lease in
// kube-node-lease; the Node status itself is refreshed rarely), and the
// fast pod stages (pod-ready, pod-complete, pod-delete). The YAML is kwok's
// own, embedded in its module at the pinned version. Last comes a
// KwokConfiguration with kwok's own defaults: kwok does not default a
// configuration it is given (a missing nodeLeaseParallelism is 0, which it
// refuses), so a bench that sets one option edits this document.
package main

import (
	"fmt"
	"os"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "stages:", err)
		os.Exit(1)
	}
}

func run() error {
	conf := &v1alpha1.KwokConfiguration{}
	conf.APIVersion = v1alpha1.GroupVersion.String()
	conf.Kind = v1alpha1.KwokConfigurationKind
	v1alpha1.SetObjectDefaults_KwokConfiguration(conf)
	confYAML, err := yaml.Marshal(conf)
	if err != nil {
		return err
	}
	docs := []string{
		nodefast.DefaultNodeInit,
		nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
		string(confYAML),
	}
	for i, d := range docs {
		docs[i] = strings.TrimSpace(d)
	}
	_, err = fmt.Println(strings.Join(docs, "\n---\n"))
	return err
}
