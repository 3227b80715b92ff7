package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/internal/testproc"
)

// Cluster is several keelson servers on loopback addresses of this host,
// one address each (127.R.R.1, .2, ... with R random, so that concurrent
// test runs do not meet), sharing one set of free ports.
type Cluster struct {
	Servers []*Server
	base    string // the addresses' common prefix, 127.R.R.
	ports   []int  // API, raft, etcd, serf and supervisor port of every server
	opts    ServerOptions
}

// StartCluster starts n servers with --bootstrap-expect n, the others
// joining the first with its token, and waits until all are ready. opts
// apply to every server; IP and NodeName are set per server (s1, s2, ...).
func StartCluster(t testing.TB, n int, opts ServerOptions) *Cluster {
	t.Helper()
	base := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), 1+rand.IntN(250))
	var ips []string
	for i := 1; i <= n; i++ {
		ips = append(ips, base+strconv.Itoa(i))
	}
	ports := freePortsOn(t, ips, 5)
	c := &Cluster{base: base, ports: ports, opts: opts}
	for i, ip := range ips {
		o := opts
		o.IP, o.NodeName = ip, "s"+strconv.Itoa(i+1)
		o.Args = append([]string{"--bootstrap-expect", strconv.Itoa(n)}, opts.Args...)
		s := newServer(t, o)
		s.APIPort, s.raftPort, s.etcdPort, s.serfPort, s.supPort = ports[0], ports[1], ports[2], ports[3], ports[4]
		if i > 0 {
			s.opts.Args = append(s.opts.Args, "--join", ips[0], "--token", c.joinToken(t))
		}
		s.launch(t)
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		s.WaitReady(t)
	}
	return c
}

// AddServer starts one more server, s<N+1> on the next address, joining the
// first server with its token (no --bootstrap-expect: it joins an existing
// cluster), and waits until it is ready.
func (c *Cluster) AddServer(t testing.TB) *Server {
	t.Helper()
	n := len(c.Servers) + 1
	ip := c.base + strconv.Itoa(n)
	for _, p := range c.ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("the cluster's port %d is taken on %s, the new server's address: %v", p, ip, err)
		}
		l.Close()
	}
	o := c.opts
	o.IP, o.NodeName = ip, "s"+strconv.Itoa(n)
	var via *Server
	for _, s := range c.Servers {
		if s.Running() {
			via = s
			break
		}
	}
	if via == nil {
		t.Fatal("AddServer: no server of the cluster runs to join")
	}
	o.Args = append(append([]string{}, c.opts.Args...), "--join", via.opts.IP, "--token", c.joinToken(t))
	s := newServer(t, o)
	s.APIPort, s.raftPort, s.etcdPort, s.serfPort, s.supPort = c.ports[0], c.ports[1], c.ports[2], c.ports[3], c.ports[4]
	s.launch(t)
	c.Servers = append(c.Servers, s)
	s.WaitReady(t)
	return s
}

// joinToken waits for the first server to write its join token.
func (c *Cluster) joinToken(t testing.TB) string {
	t.Helper()
	path := filepath.Join(c.Servers[0].DataDir, "join-token")
	deadline := time.Now().Add(StoreReadyTimeout)
	for {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not write %s; log tail:\n%s", c.Servers[0].Name(), path, testproc.Tail(c.Servers[0].LogPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePortsOn finds n ports free on every address at once.
func freePortsOn(t testing.TB, ips []string, n int) []int {
	t.Helper()
	var ports []int
	for attempt := 0; len(ports) < n; attempt++ {
		if attempt > 1000 {
			t.Fatalf("no %d ports free on all of %v", n, ips)
		}
		p := FreePort(t)
		ok := true
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok && !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// Peers asks the server, over its admin socket, for its raft view.
func (s *Server) Peers(ctx context.Context) (*ops.PeersResponse, error) {
	c, err := ops.Dial(s.DataDir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Peers(ctx)
}

// Leader waits until a running server reports itself leader and returns it
// with its term.
func (c *Cluster) Leader(t testing.TB) (*Server, uint64) {
	t.Helper()
	deadline := time.Now().Add(StoreReadyTimeout)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			if !s.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			p, err := s.Peers(ctx)
			cancel()
			if err == nil && p.State == "Leader" {
				return s, p.Term
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no server became leader within %s", StoreReadyTimeout)
	return nil, 0
}
