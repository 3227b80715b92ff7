package liveness

import (
	"maps"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/nodeproof"
	"github.com/keelson/keelson/internal/serfpool"
)

// proofCheck is the outcome of checking one member's proof for one node,
// kept while the inputs stay the same (a signature check per member per
// second would cost a core at thousands of nodes).
type proofCheck struct {
	tag, addr, keyHash string
	err                string // "" when proven
}

// dropUnproven removes from members every member that claims the name of a
// node requiring a gossip proof (its agent said so on the Node) without
// presenting a valid one: holding the gossip key is not being that node.
// Such a node is then treated as absent from the pool, and its mark-down is
// not held back by the impostor answering probes (confirmDown).
func (r *runner) dropUnproven(nodes []*corev1.Node, members map[string]serfpool.Member) {
	clear(r.unproven)
	seen := map[string]bool{}
	for _, n := range nodes {
		m, inPool := members[n.Name]
		if !inPool || n.Annotations[nodeproof.RequiredAnnotation] != "true" {
			continue
		}
		seen[n.Name] = true
		if reason := r.checkProof(n, m); reason != "" {
			delete(members, n.Name)
			r.unproven[n.Name] = true
			continue
		}
	}
	maps.DeleteFunc(r.proofs, func(name string, _ proofCheck) bool { return !seen[name] })
}

// checkProof returns why m is not node n's agent, or "" if it proves it is.
func (r *runner) checkProof(n *corev1.Node, m serfpool.Member) string {
	c := proofCheck{tag: m.Proof, addr: m.GossipAddr, keyHash: n.Annotations[nodeproof.KeyAnnotation]}
	if prev, ok := r.proofs[n.Name]; ok && prev.tag == c.tag && prev.addr == c.addr && prev.keyHash == c.keyHash {
		return prev.err
	}
	switch {
	case c.keyHash == "":
		c.err = "the Node has no key binding (" + nodeproof.KeyAnnotation + ")"
	default:
		if err := nodeproof.Verify(c.tag, n.Name, c.addr, c.keyHash); err != nil {
			c.err = err.Error()
		}
	}
	if c.err != "" {
		r.log.Warn("ignoring a gossip member that claims a node's name without proving its key: it does not keep the node alive",
			"node", n.Name, "member_addr", c.addr, "reason", c.err)
	}
	r.proofs[n.Name] = c
	return c.err
}
