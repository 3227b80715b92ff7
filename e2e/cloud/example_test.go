package cloud

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
)

// buildExample builds examples/plugins/filecloud into a plugin directory
// and returns the directory and the binary's checksum.
func buildExample(t *testing.T) (dir, sum string) {
	t.Helper()
	bin, sum := harness.BuildPlugin(t, "github.com/keelson/keelson/examples/plugins/filecloud", "filecloud")
	return filepath.Dir(bin), sum
}

// TestExampleProvider: the example third-party provider, loaded from the
// plugin directory with the cloud-provider preset, initialises the node of
// an agent started with --cloud-provider=external (provider ID, instance
// type, zone and region labels, addresses from its file) and lifts the
// uninitialized taint the node registered with; it also gives a
// LoadBalancer Service the address its file describes.
func TestExampleProvider(t *testing.T) {
	nodeagent.Require(t)
	pluginDir, sum := buildExample(t)
	node := "fc-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	// Third-party plugins run as nobody: the file must be readable by all,
	// which t.TempDir's parent (0700) is not.
	cloudDir, err := os.MkdirTemp("", "keelson-filecloud-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(cloudDir) })
	if err := os.Chmod(cloudDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cloudFile := filepath.Join(cloudDir, "cloud.json")
	desc := fmt.Sprintf(`{"instances": [{"node": %q, "id": "i-0a1", "type": "m1.small", "zone": "zone-a", "region": "region-1",
	  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "ExternalIP", "address": "203.0.113.9"}, {"type": "Hostname", "address": %q}]}],
	  "loadBalancers": [{"service": "default/web", "ip": "203.0.113.80"}]}`, node, node)
	if err := os.WriteFile(cloudFile, []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	s := harness.StartServer(t, harness.ServerOptions{Args: []string{
		"--plugin-dir", pluginDir,
		"--plugin", "filecloud=" + sum + ":cloud-provider",
		"--plugin-config", `filecloud={"file":"` + cloudFile + `"}`,
	}})
	c := s.Clientset(t)
	// The Node as it is created, seen by a watch started before the agent:
	// the provider may initialise it a moment later.
	created := watchCreation(t, c, node)
	a := nodeagent.New(t, nodeagent.Options{Name: node, Args: []string{
		"--server", "https://127.0.0.1:" + strconv.Itoa(s.APIPort),
		"--token", s.JoinToken(t),
		"--supervisor-port", strconv.Itoa(s.SupervisorPort()),
		"--serf-port", strconv.Itoa(harness.FreePort(t)),
		"--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
		"--disable-service-network",
		"--cloud-provider", "external",
	}})
	a.Start(t)
	select {
	case n := <-created:
		if !slices.ContainsFunc(n.Spec.Taints, isUninitialized) {
			t.Errorf("node %s was created with taints %v, want the uninitialized one (--cloud-provider=external)", node, n.Spec.Taints)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("node %s was not created", node)
	}

	var n *v1.Node
	harness.Eventually(t, waitTimeout, "node "+node+" is initialised by the example provider", func() (bool, string) {
		var err error
		n, err = c.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		// The cloud node controller removes the taint first and sets the
		// addresses in a second write, as upstream's does.
		return n.Spec.ProviderID != "" && !slices.ContainsFunc(n.Spec.Taints, isUninitialized) &&
				slices.ContainsFunc(n.Status.Addresses, func(a v1.NodeAddress) bool { return a.Type == v1.NodeExternalIP }),
			fmt.Sprintf("providerID %q taints %v addresses %v", n.Spec.ProviderID, n.Spec.Taints, n.Status.Addresses)
	})
	if n.Spec.ProviderID != "filecloud://i-0a1" || n.Labels[v1.LabelInstanceTypeStable] != "m1.small" ||
		n.Labels[v1.LabelTopologyZone] != "zone-a" || n.Labels[v1.LabelTopologyRegion] != "region-1" {
		t.Errorf("node %s: providerID %q labels %v", node, n.Spec.ProviderID, n.Labels)
	}
	if !slices.Contains(n.Status.Addresses, v1.NodeAddress{Type: v1.NodeExternalIP, Address: "203.0.113.9"}) {
		t.Errorf("node %s addresses %v lack the provider's ExternalIP", node, n.Status.Addresses)
	}

	createService(t, c, "default", lbService("web"))
	waitIngress(t, c, "default", "web", "203.0.113.80")
}

// watchCreation returns the Node named name as its creation left it.
func watchCreation(t *testing.T, c kubernetes.Interface, name string) <-chan *v1.Node {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := c.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *v1.Node, 1)
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if n, ok := ev.Object.(*v1.Node); ok && ev.Type == watch.Added {
				out <- n
				return
			}
		}
	}()
	return out
}

func isUninitialized(t v1.Taint) bool {
	return t.Key == "node.cloudprovider.kubernetes.io/uninitialized"
}
