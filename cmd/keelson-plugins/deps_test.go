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
		// The keelson binary serves the plugins needing these
		// (multicall.ServedByKeelson): kube-apiserver's quota evaluators
		// and admission policy CEL, 2.6 MiB at every process's start.
		"github.com/keelson/keelson/plugins/builtin/resourcequota",
		"github.com/keelson/keelson/plugins/builtin/vapstatus",
		"k8s.io/kubernetes/pkg/quota",
		"k8s.io/apiserver/pkg/admission/plugin/policy",
		"k8s.io/client-go/kubernetes/fake",
		"go.etcd.io/etcd/client/v3",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(pkg, f)) {
				t.Errorf("keelson-plugins links %s (from %s): every plugin process would initialise it", pkg, f)
			}
		}
	}
}
