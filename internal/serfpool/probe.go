package serfpool

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"
)

// probeQuery is the serf query by which a server asks the other servers to
// probe members: a second opinion before the leader declares nodes down,
// so that one server's stale or cut-off view never condemns a node.
const probeQuery = "keelson-probe"

// probeBudget bounds the estimated size of one probe query's answer (and of
// the query itself): serf refuses either beyond 1 KiB.
const probeBudget = 900

// probeCost estimates one member's share of an answer:
// "name":{"s":"failed","r":true},
func probeCost(name string) int { return len(name) + 32 }

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

// probeAnswer is one member's part of an answer on the wire.
type probeAnswer struct {
	Status    Status `json:"s,omitempty"`
	Reachable bool   `json:"r,omitempty"`
}

// Probe pings each named member directly, concurrently, with the message
// memberlist's failure detector sends, and reports which answered within
// ProbeInterval: a fresh observation, independent of the members' status in
// the pool. A member the pool does not know counts as unreachable. ctx
// bounds the wait.
func (p *Pool) Probe(ctx context.Context, names ...string) map[string]bool {
	addrs := map[string]net.Addr{}
	for _, m := range p.serf.Members() {
		addrs[m.Name] = &net.UDPAddr{IP: m.Addr, Port: int(m.Port)}
	}
	var mu sync.Mutex
	out := make(map[string]bool, len(names))
	var wg sync.WaitGroup
	for _, name := range names {
		out[name] = false
		addr, ok := addrs[name]
		if !ok {
			continue
		}
		wg.Go(func() {
			_, err := p.serf.Memberlist().Ping(name, addr)
			mu.Lock()
			out[name] = err == nil
			mu.Unlock()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	res := make(map[string]bool, len(out))
	for k, v := range out {
		res[k] = v
	}
	return res
}

// CrossCheck asks every other alive server of the pool to probe the named
// members and say how their pools see them. It returns, by member, the
// answers that came back before the queries' timeout or ctx ended, and how
// many servers were asked. Only servers answer.
func (p *Pool) CrossCheck(ctx context.Context, names []string) (map[string][]Opinion, int, error) {
	var asked []string
	for _, m := range p.Members() {
		if m.IsServer() && m.Status == StatusAlive && m.Name != p.cfg.NodeName {
			asked = append(asked, m.Name)
		}
	}
	out := map[string][]Opinion{}
	if len(asked) == 0 {
		return out, 0, nil
	}
	for len(names) > 0 {
		n, size := 0, 0
		for n < len(names) && (n == 0 || size+probeCost(names[n]) <= probeBudget) {
			size += probeCost(names[n])
			n++
		}
		if err := p.crossCheckBatch(ctx, asked, names[:n], out); err != nil {
			return out, len(asked), err
		}
		names = names[n:]
	}
	return out, len(asked), nil
}

func (p *Pool) crossCheckBatch(ctx context.Context, asked, names []string, out map[string][]Opinion) error {
	payload, err := json.Marshal(names)
	if err != nil {
		return fmt.Errorf("membership: encoding probe query: %w", err)
	}
	// Each server pings for up to ProbeInterval before it answers.
	params := &serf.QueryParam{FilterNodes: asked, Timeout: max(p.serf.DefaultQueryTimeout(), 3*p.cfg.ProbeInterval)}
	resp, err := p.serf.Query(probeQuery, payload, params)
	if err != nil {
		return fmt.Errorf("membership: asking %v to probe %v: %w", asked, names, err)
	}
	defer resp.Close()
	for answered := 0; answered < len(asked); {
		select {
		case r, ok := <-resp.ResponseCh():
			if !ok {
				return nil
			}
			answered++
			var a map[string]probeAnswer
			if err := json.Unmarshal(r.Payload, &a); err != nil {
				p.log.Warn("unreadable probe answer", "from", r.From, "error", err)
				continue
			}
			for _, name := range names {
				out[name] = append(out[name], Opinion{Server: r.From, Status: a[name].Status, Reachable: a[name].Reachable})
			}
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// query answers another server's probe query, off the event loop: the pings
// take up to ProbeInterval and serf stalls while the loop is busy.
func (p *Pool) query(q *serf.Query) {
	if q.Name != probeQuery || p.cfg.Role != RoleServer {
		return
	}
	var names []string
	if err := json.Unmarshal(q.Payload, &names); err != nil || len(q.Payload) > probeBudget {
		p.log.Warn("ignoring a malformed probe query", "from", q.SourceNode(), "names", len(names), "error", err)
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithDeadline(context.Background(), q.Deadline())
		defer cancel()
		status := map[string]Status{}
		for _, m := range p.Members() {
			status[m.Name] = m.Status
		}
		reachable := p.Probe(ctx, names...)
		answer := make(map[string]probeAnswer, len(names))
		for _, n := range names {
			answer[n] = probeAnswer{Status: status[n], Reachable: reachable[n]}
		}
		b, _ := json.Marshal(answer) // strings and bools only
		if err := q.Respond(b); err != nil && time.Now().Before(q.Deadline()) {
			p.log.Warn("answering probe query", "from", q.SourceNode(), "error", err)
		}
	}()
}
