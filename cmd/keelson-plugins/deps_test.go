package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The point of this binary is what it does not link: every built-in plugin
// process would pay for the initialisation of these packages, as it did
// when built-ins re-executed keelson.
func TestLinksNoServerKubectlOrContainerd(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{
		"k8s.io/kubernetes/pkg/controlplane", // kube-apiserver
		"k8s.io/kubernetes/pkg/kubeapiserver",
		"k8s.io/kubernetes/pkg/registry",
		"k8s.io/kubectl/pkg/cmd",
		"github.com/containerd/containerd",
		"github.com/hashicorp/raft",
		"github.com/keelson/keelson/core/",
		"github.com/keelson/keelson/agent",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(pkg, f)) {
				t.Errorf("keelson-plugins links %s (from %s): every plugin process would initialise it", pkg, f)
			}
		}
	}
}
