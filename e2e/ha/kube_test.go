package ha

import (
	"testing"
	"time"
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
	t.Logf("SCENARIO %s: %s\n  faults: %s\n  operations: %s\n  linearizability: %s",
		t.Name(), passFail(t), fault, h.Summary(), verdict)
}
