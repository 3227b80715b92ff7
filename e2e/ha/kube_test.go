package ha

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// TestKubernetesAPIKillLeader runs clients through every server's embedded
// kube-apiserver, updating ConfigMaps with and without resourceVersion
// preconditions, across a kill -9 of the raft leader (and its
// kube-apiserver) and its restart.
func TestKubernetesAPIKillLeader(t *testing.T) {
	c := NewCluster(t, Options{APIServer: true})
	cfg := CASConfig{Prefix: "ha-", Keys: 3, ClientsPerServer: 2, RequestTimeout: 10 * time.Second, Think: 20 * time.Millisecond}
	InitConfigMaps(t, c, cfg)
	w := StartKubeCAS(t, c, cfg)
	time.Sleep(3 * time.Second)
	sc := Scenario{Hold: 5 * time.Second}
	fault := sc.inject(t, c, &KillLeader{})
	time.Sleep(3 * time.Second)
	h := w.Stop()
	verdict := CheckLinearizable(t, RegisterModel(InitialValue), h.Ops, 2*time.Minute)
	CheckConfigMapsAgree(t, c, cfg, h)
	c.CheckHashes(t, 2*time.Minute)
	checkAPIServerIdentities(t, c)
	t.Logf("SCENARIO %s: %s\n  faults: %s\n  operations: %s\n  linearizability: %s",
		t.Name(), passFail(t), fault, h.Summary(), verdict)
}

// checkAPIServerIdentities: each server's kube-apiserver keeps an identity
// Lease of its own, though all three share this host's hostname, from
// which upstream derives the Lease's name (the restarted one takes its
// own back).
func checkAPIServerIdentities(t *testing.T, c *Cluster) {
	t.Helper()
	kube := c.Servers[0].Clientset(t)
	harness.Eventually(t, time.Minute, "one kube-apiserver identity Lease per server", func() (bool, string) {
		leases, err := kube.CoordinationV1().Leases("kube-system").List(context.Background(),
			metav1.ListOptions{LabelSelector: "apiserver.kubernetes.io/identity=kube-apiserver"})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, l := range leases.Items {
			names = append(names, l.Name)
		}
		return len(names) == len(c.Servers), fmt.Sprintf("leases %q", names)
	})
}
