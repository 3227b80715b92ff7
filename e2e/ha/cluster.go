package ha

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/core/kvserver"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/testproc"
)

// Options shape a cluster.
type Options struct {
	// Servers is how many servers to run (default 3).
	Servers int
	// APIServer runs the embedded kube-apiserver too; by default servers run
	// the store only (--disable-apiserver), which starts much faster.
	APIServer bool
	// DiskSize, when set (e.g. "48m"), puts every data dir on a tmpfs of
	// that size, so a test can fill it.
	DiskSize string
	// RaftProxy sends every raft connection between servers through a
	// userspace Proxy in the test process (an iptables DNAT rule in each
	// server's namespace), so faults can delay and drop that traffic.
	RaftProxy bool
	// Args are extra `keelson server` flags for every server.
	Args []string
	// NetArgs, when set, are more flags computed from the test's network
	// once it exists (e.g. a LoadBalancer pool on the bridge's subnet).
	NetArgs func(*Network) []string
	// Hosts are more namespaces on the same bridge that run no server
	// (node agents, clients), named as given; Net.Host finds them.
	Hosts []string
	// Agent runs each server's own node agent (no --disable-agent), so the
	// server is a node: its kube-apiserver reaches pods (proxy, webhooks,
	// aggregated APIs) through the routes the agent programs.
	Agent bool
	// Bin is the keelson binary the servers start with (default: the
	// binary under test). An upgrade test starts an older build and swaps
	// it server by server with Server.SetBin.
	Bin string
}

// raftPort is the servers' default raft port.
const raftPort = 6444

// Cluster is a running set of servers on their own network.
type Cluster struct {
	Net     *Network
	Servers []*Server
	// Proxies, with Options.RaftProxy, carry the raft connections to each
	// server (keyed by the server they lead to).
	Proxies map[*Server]*Proxy
	blocks  blockSet
	byID    map[uint64]*Server // etcd member ID -> server
}

// NewCluster starts the servers, each in its own namespace: the first
// bootstraps, the others join it with its token. It returns once every store
// is ready and a leader is known. Everything is stopped and removed when the
// test ends.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	bin := opts.Bin
	if bin == "" {
		bin = harness.KeelsonBin(t)
	}
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	var names []string
	for i := range opts.Servers {
		names = append(names, fmt.Sprintf("s%d", i+1))
	}
	c := &Cluster{Net: NewNetwork(t, append(names, opts.Hosts...)...), byID: map[uint64]*Server{}}
	for _, h := range c.Net.Hosts()[:opts.Servers] {
		dir := t.TempDir()
		s := &Server{Host: h, bin: bin, dataDir: filepath.Join(dir, "data"), logDir: dir, apiOn: opts.APIServer}
		if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
			t.Fatalf("data dir: %v", err)
		}
		if opts.DiskSize != "" {
			mountTmpfs(t, s.dataDir, opts.DiskSize)
		}
		c.Servers = append(c.Servers, s)
		c.byID[kvserver.MemberID(s.Name)] = s
	}
	// Servers stop before their network and mounts go (cleanups run last
	// registered first).
	t.Cleanup(func() {
		for _, s := range c.Servers {
			s.Kill()
			harness.RemovePluginRunDirs(t, s.DataDir())
			if s.client != nil {
				s.client.Close()
			}
		}
		if t.Failed() {
			for _, s := range c.Servers {
				s.dumpLogs(t)
			}
			keepArtifacts(t, c.Servers)
		}
	})

	if opts.RaftProxy {
		c.startRaftProxies(t)
	}

	start := time.Now()
	first := c.Servers[0]
	// The servers' etcd API is on the bridge, not loopback: it must require
	// client certificates.
	etcdCA := harness.NewEtcdClientCA(t)
	for i, s := range c.Servers {
		s.etcdTLS = etcdCA.TLS(s.dataDir)
		s.args = []string{
			"--data-dir", s.dataDir,
			"--node-name", s.Name,
			"--bind-address", s.IP,
			"--bootstrap-expect", fmt.Sprint(opts.Servers),
			"--etcd-listen", s.EtcdAddr(),
			"--etcd-client-ca", etcdCA.File,
		}
		if !opts.Agent {
			s.args = append(s.args, "--disable-agent")
		}
		if !opts.APIServer {
			s.args = append(s.args, "--disable-apiserver")
		}
		if i > 0 {
			s.args = append(s.args, "--join", first.IP, "--token", first.JoinToken(t))
		}
		s.args = append(s.args, opts.Args...)
		if opts.NetArgs != nil {
			s.args = append(s.args, opts.NetArgs(c.Net)...)
		}
		s.newClient(t)
		s.launch(t)
	}
	for _, s := range c.Servers {
		s.WaitReady(t)
	}
	leader, term := c.WaitLeader(t, time.Minute, nil)
	t.Logf("cluster of %d ready after %s: leader %s, term %d", opts.Servers, time.Since(start).Round(time.Millisecond), leader.Name, term)
	return c
}

// startRaftProxies puts a Proxy in front of every server's raft port and
// makes every other server's connections to it go there.
func (c *Cluster) startRaftProxies(t testing.TB) {
	t.Helper()
	RequireIptables(t)
	c.Proxies = map[*Server]*Proxy{}
	for _, s := range c.Servers {
		p := StartProxy(t, c.Net.BridgeIP()+":0", fmt.Sprintf("%s:%d", s.IP, raftPort), c.blocks.blocked)
		c.Proxies[s] = p
		for _, o := range c.Followers(s) {
			if _, err := o.Exec("iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", s.IP,
				"--dport", fmt.Sprint(raftPort), "-j", "DNAT", "--to-destination", p.Addr().String()); err != nil {
				t.Fatalf("routing %s's raft traffic to %s through the proxy: %v", o.Name, s.Name, err)
			}
		}
	}
}

// blockSet is the (from, to) address pairs a partition cuts. iptables
// rules in the namespaces cut direct traffic; the raft proxies consult this
// for what they carry, since DNAT hides the peers' addresses from those
// rules.
type blockSet struct {
	mu    sync.Mutex
	pairs map[[2]string]bool
}

func (b *blockSet) blocked(from, to string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.pairs[[2]string{from, to}]
}

func (b *blockSet) set(from, to string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pairs == nil {
		b.pairs = map[[2]string]bool{}
	}
	if on {
		b.pairs[[2]string{from, to}] = true
	} else {
		delete(b.pairs, [2]string{from, to})
	}
}

// Block cuts traffic between s and peers: in, what s receives from them;
// out, what s sends to them. Both together are a two-way partition.
// Clients (the test process) still reach every server.
func (c *Cluster) Block(t testing.TB, s *Server, in, out bool, peers []*Server) {
	t.Helper()
	var hosts []*Host
	for _, p := range peers {
		hosts = append(hosts, p.Host)
		if in {
			c.blocks.set(p.IP, s.IP, true)
		}
		if out {
			c.blocks.set(s.IP, p.IP, true)
		}
	}
	if err := s.Block(in, out, hosts...); err != nil {
		t.Fatalf("partitioning %s: %v", s.Name, err)
	}
}

// Unblock removes every cut Block made around s.
func (c *Cluster) Unblock(t testing.TB, s *Server) {
	t.Helper()
	if err := s.Unblock(); err != nil {
		t.Fatalf("healing the partition of %s: %v", s.Name, err)
	}
	for _, p := range c.Servers {
		c.blocks.set(p.IP, s.IP, false)
		c.blocks.set(s.IP, p.IP, false)
	}
}

// JoinToken waits for the server to write its join token (every server
// does at start) and returns it: servers join with it (node agents with
// AgentTokenFile).
func (s *Server) JoinToken(t testing.TB) string {
	t.Helper()
	path := filepath.Join(s.dataDir, "join-token")
	deadline := time.Now().Add(storeReadyTimeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b))
		}
		if !s.Running() {
			t.Fatalf("%s exited before writing %s: %v; log tail:\n%s", s.Name, path, s.exitErr(), testproc.Tail(s.logPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s wrote no %s within %s", s.Name, path, storeReadyTimeout)
	return ""
}

// AgentTokenFile waits for the cluster's agent token and returns its file,
// for node agents' --token-file. Whichever server's API server is ready
// first creates the token and writes the file; the others have none.
func (c *Cluster) AgentTokenFile(t testing.TB) string {
	t.Helper()
	deadline := time.Now().Add(serverReadyTimeout)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			path := filepath.Join(s.dataDir, "agent-token")
			if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				return path
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no server wrote DATA_DIR/agent-token within %s", serverReadyTimeout)
	return ""
}

func mountTmpfs(t testing.TB, dir, size string) {
	t.Helper()
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Logf("cleanup: umount %s: %v: %s", dir, err, out)
		}
	})
}

// Leader asks every serving server for its view (etcd Status) and returns
// the leader that a majority of servers agree on, the leader itself
// included, with its term.
func (c *Cluster) Leader(ctx context.Context) (*Server, uint64, error) {
	votes := map[uint64]int{}
	var terms = map[uint64]uint64{}
	var errs []error
	for _, s := range c.Servers {
		if !s.Serving() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := s.client.Status(sctx, s.EtcdAddr())
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
			continue
		}
		if st.Leader == 0 {
			errs = append(errs, fmt.Errorf("%s knows no leader (term %d)", s.Name, st.RaftTerm))
			continue
		}
		votes[st.Leader]++
		if c.byID[st.Leader] == s {
			terms[st.Leader] = st.RaftTerm
		}
	}
	for id, n := range votes {
		l, ok := c.byID[id]
		if !ok {
			return nil, 0, fmt.Errorf("leader id %x is no server of this cluster", id)
		}
		term, self := terms[id]
		if n > len(c.Servers)/2 && self {
			return l, term, nil
		}
	}
	return nil, 0, fmt.Errorf("no leader agreed by a majority (votes %v): %w", votes, errors.Join(errs...))
}

// WaitLeader waits for a leader that accept (when not nil) accepts, and
// returns it with its term.
func (c *Cluster) WaitLeader(t testing.TB, timeout time.Duration, accept func(*Server, uint64) bool) (*Server, uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		l, term, err := c.Leader(ctx)
		if err == nil && (accept == nil || accept(l, term)) {
			return l, term
		}
		if err == nil {
			err = fmt.Errorf("leader %s (term %d) is not the one awaited", l.Name, term)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no leader within %s: %v", timeout, last)
	return nil, 0
}

// Followers returns every server but s.
func (c *Cluster) Followers(s *Server) []*Server {
	var out []*Server
	for _, o := range c.Servers {
		if o != s {
			out = append(out, o)
		}
	}
	return out
}

// WaitWritable waits until a put through every serving server succeeds,
// which is what recovery means to a client.
func (c *Cluster) WaitWritable(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, s := range c.Servers {
		if !s.Serving() {
			continue
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := s.client.Put(ctx, "/ha-probe/"+s.Name, time.Now().String())
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				s.DumpGoroutines(t)
				t.Fatalf("no write through %s succeeded within %s: %v", s.Name, timeout, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// CheckHashes waits until every serving server reports its state machine
// hash at the same revision, and fails if the hashes differ there.
func (c *Cluster) CheckHashes(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for attempt := 1; ; attempt++ {
		revs := map[int64]map[uint32][]string{}
		var errs []error
		for _, s := range c.Servers {
			if !s.Serving() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h, err := s.client.HashKV(ctx, s.EtcdAddr(), 0)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
				continue
			}
			if revs[h.HashRevision] == nil {
				revs[h.HashRevision] = map[uint32][]string{}
			}
			revs[h.HashRevision][h.Hash] = append(revs[h.HashRevision][h.Hash], s.Name)
		}
		if len(errs) == 0 && len(revs) == 1 {
			for rev, hashes := range revs {
				if len(hashes) != 1 {
					t.Errorf("state machine hashes differ at revision %d: %v", rev, hashes)
					return
				}
				for h, names := range hashes {
					t.Logf("hashes: %s agree on %08x at revision %d (attempt %d)", strings.Join(names, ","), h, rev, attempt)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("servers never reported hashes at one revision within %s: %v %v", timeout, revs, errors.Join(errs...))
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// keepArtifacts copies every server's data and log directory under
// $KEELSON_E2E_KEEP/<test>/<server> when that is set, so a failure that
// does not reproduce can be read afterwards (raft log, snapshots, logs).
func keepArtifacts(t testing.TB, servers []*Server) {
	root := os.Getenv("KEELSON_E2E_KEEP")
	if root == "" {
		return
	}
	for _, s := range servers {
		dst := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"), s.Name)
		if err := os.MkdirAll(dst, 0o700); err != nil {
			t.Logf("keep artifacts of %s: %v", s.Name, err)
			continue
		}
		out, err := exec.Command("cp", "-a", s.logDir+"/.", dst).CombinedOutput()
		if err != nil {
			t.Logf("keep artifacts of %s: %v: %s", s.Name, err, out)
			continue
		}
		t.Logf("kept %s's data and logs in %s", s.Name, dst)
	}
}
