package liveness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/nodeproof"
	"github.com/keelson/keelson/internal/serfpool"
)

// TestImpostorDoesNotKeepANodeReady: a node whose agent proves its gossip
// membership (RequiredAnnotation) stays Ready only while a member proves its
// key. An impostor holding just the gossip key, joined under the dead node's
// name and answering every probe, does not hold its mark-down back; the real
// agent's proof, at its own address, does. A node without the annotation
// (an older agent) is judged by gossip alone, as before.
func TestImpostorDoesNotKeepANodeReady(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hash, err := nodeproof.KeyHash(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	proven := func(n *corev1.Node) *corev1.Node {
		n.Annotations[nodeproof.RequiredAnnotation] = "true"
		n.Annotations[nodeproof.KeyAnnotation] = hash
		return n
	}
	h := start(t, proven(readyNode("victim", true)), proven(readyNode("honest", true)), readyNode("legacy", true))
	tag, err := nodeproof.Sign(key, "honest", "10.0.0.2:7946")
	if err != nil {
		t.Fatal(err)
	}
	victimTag, err := nodeproof.Sign(key, "victim", "10.0.0.1:7946")
	if err != nil {
		t.Fatal(err)
	}
	honest := member("honest", serfpool.StatusAlive, time.Hour)
	honest.GossipAddr, honest.Proof = "10.0.0.2:7946", tag
	// The impostor replays the victim's old proof from its own address.
	impostor := member("victim", serfpool.StatusAlive, time.Hour)
	impostor.GossipAddr, impostor.Proof = "10.0.0.66:7946", victimTag
	legacy := member("legacy", serfpool.StatusAlive, time.Hour)
	h.pool.set(honest)
	h.pool.set(impostor)
	h.pool.set(legacy)
	h.pool.mu.Lock()
	h.pool.reachable["victim"], h.pool.reachable["honest"], h.pool.reachable["legacy"] = true, true, true
	h.pool.mu.Unlock()

	h.tick(grace + 3*time.Second)
	waitFor(t, "the impersonated node marked Unknown", func() bool {
		return readyOf(t, h.cs, "victim").Status == corev1.ConditionUnknown
	})
	for _, name := range []string{"honest", "legacy"} {
		if st := readyOf(t, h.cs, name).Status; st != corev1.ConditionTrue {
			t.Errorf("node %s Ready = %s, want True (its member is alive and, if required, proven)", name, st)
		}
	}
}
