package liveness

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/serfpool"
)

// stepKind is what one round does to one Node.
type stepKind int

const (
	// stepAnnotate marks the Node as gossip-managed: its member is alive in
	// the pool.
	stepAnnotate stepKind = iota
	// stepMarkDown sets Ready and the pressure conditions to Unknown, once
	// the cross-check agrees the member is unreachable.
	stepMarkDown
	// stepRestore sets Ready back to True: the member is alive again and
	// Ready is still the Unknown a liveness check put there.
	stepRestore
)

func (k stepKind) String() string {
	switch k {
	case stepAnnotate:
		return "annotate"
	case stepMarkDown:
		return "mark-down"
	case stepRestore:
		return "restore"
	}
	return "unknown"
}

type step struct {
	kind stepKind
	node string
}

// planInput is one round's view of the world.
type planInput struct {
	now time.Time
	// leaderSince is when this server started leading: a fresh leader waits
	// a full grace period before it marks any node down, whatever its pool
	// says, so a leader change never turns into a mass eviction.
	leaderSince time.Time
	grace       time.Duration
	nodes       []*corev1.Node
	members     map[string]serfpool.Member
	// missingSince is, for gossip-managed Nodes absent from the pool, when
	// this leader first noticed the absence.
	missingSince map[string]time.Time
}

// plan decides what each Node needs; it is pure so the rules can be tested
// on their own. A Node needs nothing in the steady state (member alive,
// Ready as the agent wrote it): heartbeats cost no writes.
func plan(in planInput) []step {
	var steps []step
	for _, n := range in.nodes {
		m, inPool := in.members[n.Name]
		if !nodehealth.IsGossip(n) {
			if inPool && alive(m) {
				steps = append(steps, step{stepAnnotate, n.Name})
			}
			continue
		}
		if inPool && alive(m) {
			if nodehealth.UnknownByController(n) {
				steps = append(steps, step{stepRestore, n.Name})
			}
			continue
		}
		if downFor(in, n.Name, m, inPool) < in.grace || nodehealth.AllUnknown(n) {
			continue
		}
		steps = append(steps, step{stepMarkDown, n.Name})
	}
	return steps
}

// downFor is how long the node has been down as far as this leader can
// tell: since the member failed or left (or went missing from the pool),
// but never longer than this server has led.
func downFor(in planInput, name string, m serfpool.Member, inPool bool) time.Duration {
	since, ok := in.missingSince[name]
	if inPool {
		since, ok = m.Since, true
	}
	if !ok {
		return 0
	}
	if since.Before(in.leaderSince) {
		since = in.leaderSince
	}
	return in.now.Sub(since)
}

// alive: a leaving member is still there until it has left.
func alive(m serfpool.Member) bool {
	return m.Status == serfpool.StatusAlive || m.Status == serfpool.StatusLeaving
}
