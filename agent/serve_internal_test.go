package agent

import (
	"testing"

	"github.com/keelson/keelson/internal/nodeproof"
)

// A server's own node is kept alive by the server's gossip member, which
// proves no node key; only a standalone agent's Node asks for the proof.
func TestOnlyStandaloneAgentsRequireAGossipProof(t *testing.T) {
	if got := proofAnnotations(false)[nodeproof.RequiredAnnotation]; got != "true" {
		t.Errorf("standalone agent: %s=%q, want true", nodeproof.RequiredAnnotation, got)
	}
	if got, ok := proofAnnotations(true)[nodeproof.RequiredAnnotation]; ok {
		t.Errorf("embedded agent asks for a gossip proof (%q): its server's member has none, the node would go unreachable", got)
	}
}
