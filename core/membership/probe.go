package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/serf/serf"
)

// probeQuery is the serf query by which a server asks the other servers to
// probe a member: a second opinion before the leader declares a node down,
// so that one server's stale or partitioned view never condemns a node.
const probeQuery = "keelson-probe"

// ErrUnknownMember is returned for a member name the pool does not know.
var ErrUnknownMember = errors.New("membership: no such member")

// Opinion is one server's answer about a member.
type Opinion struct {
	// Server is the answering server's name.
	Server string
	// Status is the member's status in that server's pool ("" if it does
	// not know the member).
	Status Status
	// Reachable says that server's direct ping of the member was answered.
	Reachable bool
}

// probeAnswer is an Opinion on the wire (serf caps a response at 1 KiB).
type probeAnswer struct {
	Status    Status `json:"status"`
	Reachable bool   `json:"reachable"`
}

// Probe pings the member directly, with the same message memberlist's
// failure detector sends, and reports whether it answered within
// ProbeInterval. It is a fresh observation, independent of the member's
// status in the pool. ctx only bounds the wait for the answer.
func (p *Pool) Probe(ctx context.Context, name string) (bool, error) {
	addr, err := p.udpAddr(name)
	if err != nil {
		return false, err
	}
	done := make(chan bool, 1)
	go func() {
		_, err := p.serf.Memberlist().Ping(name, addr)
		done <- err == nil
	}()
	select {
	case ok := <-done:
		return ok, nil
	case <-ctx.Done():
		return false, fmt.Errorf("membership: probing %q: %w", name, context.Cause(ctx))
	}
}

func (p *Pool) udpAddr(name string) (net.Addr, error) {
	for _, m := range p.serf.Members() {
		if m.Name == name {
			return &net.UDPAddr{IP: m.Addr, Port: int(m.Port)}, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownMember, name)
}

// CrossCheck asks every other alive server of the pool to probe the member
// and report its status as they see it, and returns the answers that came
// back before the query's timeout (or ctx) ended, with how many servers
// were asked. Only servers answer.
func (p *Pool) CrossCheck(ctx context.Context, name string) ([]Opinion, int, error) {
	var asked []string
	for _, m := range p.Members() {
		if m.IsServer() && m.Status == StatusAlive && m.Name != p.cfg.NodeName {
			asked = append(asked, m.Name)
		}
	}
	if len(asked) == 0 {
		return nil, 0, nil
	}
	// Each server pings for up to ProbeInterval before it answers.
	params := &serf.QueryParam{FilterNodes: asked, Timeout: max(p.serf.DefaultQueryTimeout(), 3*p.cfg.ProbeInterval)}
	resp, err := p.serf.Query(probeQuery, []byte(name), params)
	if err != nil {
		return nil, len(asked), fmt.Errorf("membership: asking %v about %q: %w", asked, name, err)
	}
	defer resp.Close()
	var out []Opinion
	for len(out) < len(asked) {
		select {
		case r, ok := <-resp.ResponseCh():
			if !ok {
				return out, len(asked), nil
			}
			var a probeAnswer
			if err := json.Unmarshal(r.Payload, &a); err != nil {
				p.log.Warn("unreadable probe answer", "from", r.From, "member", name, "error", err)
				continue
			}
			out = append(out, Opinion{Server: r.From, Status: a.Status, Reachable: a.Reachable})
		case <-ctx.Done():
			return out, len(asked), nil
		}
	}
	return out, len(asked), nil
}

// query answers the probe query of another server, off the event loop: the
// ping takes up to ProbeInterval and serf stalls while the loop is busy.
func (p *Pool) query(q *serf.Query) {
	if q.Name != probeQuery || p.cfg.Role != RoleServer {
		return
	}
	name := string(q.Payload)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithDeadline(context.Background(), q.Deadline())
		defer cancel()
		a := probeAnswer{}
		if m, ok := p.member(name); ok {
			a.Status = m.Status
		}
		reachable, err := p.Probe(ctx, name)
		a.Reachable = reachable && err == nil
		b, _ := json.Marshal(a) // a struct of a string and a bool
		if err := q.Respond(b); err != nil && time.Now().Before(q.Deadline()) {
			p.log.Warn("answering probe query", "from", q.SourceNode(), "member", name, "error", err)
		}
	}()
}

func (p *Pool) member(name string) (Member, bool) {
	for _, m := range p.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}
