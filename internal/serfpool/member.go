package serfpool

import (
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/serf/serf"
)

// Status is a member's liveness as the pool sees it.
type Status string

const (
	StatusAlive   Status = "alive"
	StatusLeaving Status = "leaving" // announced a graceful leave, not yet gone
	StatusLeft    Status = "left"    // left gracefully
	StatusFailed  Status = "failed"  // stopped answering probes
	StatusUnknown Status = "unknown"
)

// Member is one node of the pool.
type Member struct {
	Name     string
	Role     Role
	SerfAddr string // host:port the member gossips on
	// GossipAddr is the address the pool probes the member at (memberlist's,
	// not a tag), which a node's proof must sign.
	GossipAddr string
	// Proof is a node agent's proof of its node key (internal/nodeproof);
	// empty for servers and agents that publish none.
	Proof    string
	APIAddr  string
	RaftAddr string // servers only
	Zone     string
	// Bootstrapped: the member is a server that holds raft state.
	Bootstrapped bool
	// BootstrapExpect is the member's --bootstrap-expect (0 if unset).
	BootstrapExpect int
	// FeatureLevel is the store feature level a server advertises
	// (fsm.FeatureLevel of its build); 0 when it advertises none.
	FeatureLevel int
	Status       Status
	// Since is when this pool first saw the member in its current Status.
	// After a restart it is when the pool learned of the member, so grace
	// periods measured from it only ever grow longer.
	Since time.Time
}

// IsServer reports whether the member takes part in raft.
func (m Member) IsServer() bool { return m.Role == RoleServer }

// Tag keys. Short, because serf caps the encoded tags at 512 bytes.
const (
	tagRole         = "role"
	tagNode         = "node"
	tagAPI          = "api"
	tagRaft         = "raft"
	tagSerf         = "serf"
	tagZone         = "zone"
	tagBootstrapped = "bootstrapped"
	tagExpect       = "expect"
	tagFeatures     = "fsm"
	tagProof        = "id"
)

func (c Config) tags(serfAddr string, bootstrapped bool) map[string]string {
	t := map[string]string{tagRole: string(c.Role), tagNode: c.NodeName}
	for k, v := range map[string]string{tagAPI: c.APIAddr, tagRaft: c.RaftAddr, tagSerf: serfAddr, tagZone: c.Zone} {
		if v != "" {
			t[k] = v
		}
	}
	if bootstrapped {
		t[tagBootstrapped] = "1"
	}
	if c.BootstrapExpect > 0 {
		t[tagExpect] = strconv.Itoa(c.BootstrapExpect)
	}
	if c.FeatureLevel > 0 {
		t[tagFeatures] = strconv.Itoa(c.FeatureLevel)
	}
	if c.proof != "" {
		t[tagProof] = c.proof
	}
	return t
}

func fromSerf(m serf.Member) Member {
	expect, _ := strconv.Atoi(m.Tags[tagExpect])
	level, _ := strconv.Atoi(m.Tags[tagFeatures])
	serfAddr := m.Tags[tagSerf]
	if serfAddr == "" && m.Addr != nil {
		serfAddr = net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
	}
	var gossipAddr string
	if m.Addr != nil {
		gossipAddr = net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
	}
	return Member{
		Name:            m.Name,
		GossipAddr:      gossipAddr,
		Proof:           m.Tags[tagProof],
		Role:            Role(m.Tags[tagRole]),
		SerfAddr:        serfAddr,
		APIAddr:         m.Tags[tagAPI],
		RaftAddr:        m.Tags[tagRaft],
		Zone:            m.Tags[tagZone],
		Bootstrapped:    m.Tags[tagBootstrapped] == "1",
		BootstrapExpect: expect,
		FeatureLevel:    level,
		Status:          fromSerfStatus(m.Status),
	}
}

func fromSerfStatus(s serf.MemberStatus) Status {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusFailed
	default:
		return StatusUnknown
	}
}

// EventType is the kind of membership change.
type EventType string

const (
	EventJoin   EventType = "join"   // a member became alive
	EventLeave  EventType = "leave"  // a member left gracefully
	EventFailed EventType = "failed" // a member stopped answering
	EventUpdate EventType = "update" // a member's tags changed
	EventReap   EventType = "reap"   // a left or failed member was forgotten
)

// Event is one membership change.
type Event struct {
	Type   EventType
	Member Member
}

func fromSerfEventType(t serf.EventType) (EventType, bool) {
	switch t {
	case serf.EventMemberJoin:
		return EventJoin, true
	case serf.EventMemberLeave:
		return EventLeave, true
	case serf.EventMemberFailed:
		return EventFailed, true
	case serf.EventMemberUpdate:
		return EventUpdate, true
	case serf.EventMemberReap:
		return EventReap, true
	default:
		return "", false
	}
}
