// Package hacluster starts a cluster of keelson servers on loopback
// addresses of this host (127.0.0.1, 127.0.0.2, ...), one address per server,
// the first bootstrapping and the others joining it, for the benchmarks that
// need more than one server (bench/habench, bench/scalebench).
package hacluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keelson/keelson/core/kvserver"
	"github.com/keelson/keelson/internal/testproc"
	"github.com/keelson/keelson/plugins/host"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"k8s.io/client-go/rest"
)

const (
	// PollInterval bounds how late a readiness or health check notices.
	PollInterval = 100 * time.Millisecond
	// StopTimeout is how long a server gets to exit after SIGTERM before SIGKILL.
	StopTimeout = 15 * time.Second
	// ProbeTimeout bounds one Status or /readyz call.
	ProbeTimeout = 2 * time.Second
)

// Ports are the listening ports every server of a cluster uses, each on its
// own address. Joining servers assume the first server's supervisor and serf
// ports equal their own, so one set serves all.
type Ports struct {
	API, Raft, Supervisor, Serf, Etcd int
}

// Server is one keelson server of a cluster and the clients the bench talks
// to it with.
type Server struct {
	Name    string
	IP      string
	DataDir string
	args    []string // after `keelson server`; the same on every start
	starts  int      // how many times it was started (names the log files)
	Proc    *testproc.Process
	Etcd    *clientv3.Client // this server's --etcd-listen endpoint only
	rest    *rest.Config     // nil until the server wrote its admin kubeconfig
}

// MemberID is the etcd member ID keelson reports for the server.
func (s *Server) MemberID() uint64 { return kvserver.MemberID(s.Name) }

// EtcdAddr is the address of s's etcd v3 API (--etcd-listen).
func (s *Server) EtcdAddr(p Ports) string { return net.JoinHostPort(s.IP, strconv.Itoa(p.Etcd)) }

// Cluster is a set of keelson servers on loopback addresses of this host.
type Cluster struct {
	log     *slog.Logger
	bin     string
	Dir     string // temp dir of every data dir and log; removed by stop
	APIOn   bool   // servers run the embedded kube-apiserver
	extra   []string
	Ports   Ports
	Servers []*Server
}

// Spec says what cluster to start.
type Spec struct {
	Label     string // names the temp dir and log lines
	Bin       string
	WorkDir   string
	Addrs     []string // one server per address; the first bootstraps
	APIServer bool     // without it: --disable-apiserver (store and etcd API only)
	ExtraArgs []string // appended to every server's flags
}

// Start starts one server per address, the first bootstrapping and
// the others joining it with its token, and returns once every server is
// healthy (see waitHealthy). On failure it stops whatever it started.
func Start(ctx context.Context, log *slog.Logger, spec Spec, timeout time.Duration) (*Cluster, error) {
	dir, err := os.MkdirTemp(spec.WorkDir, "habench-"+spec.Label+"-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir under %s: %w", spec.WorkDir, err)
	}
	c := &Cluster{log: log.With("cluster", spec.Label), bin: spec.Bin, Dir: dir, APIOn: spec.APIServer, extra: spec.ExtraArgs}
	if err := c.start(ctx, spec, timeout); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, spec Spec, timeout time.Duration) error {
	ps, err := freePortsOn(spec.Addrs, 5)
	if err != nil {
		return err
	}
	c.Ports = Ports{API: ps[0], Raft: ps[1], Supervisor: ps[2], Serf: ps[3], Etcd: ps[4]}
	deadline := time.Now().Add(timeout)
	for i, ip := range spec.Addrs {
		s := &Server{Name: fmt.Sprintf("s%d", i+1), IP: ip}
		s.DataDir = filepath.Join(c.Dir, s.Name)
		s.args = c.serverArgs(s, len(spec.Addrs))
		if i > 0 {
			token, err := c.joinToken(ctx, c.Servers[0], deadline)
			if err != nil {
				return err
			}
			s.args = append(s.args, "--join", spec.Addrs[0], "--token", token)
		}
		if s.Etcd, err = clientv3.New(clientv3.Config{
			Endpoints: []string{s.EtcdAddr(c.Ports)}, DialTimeout: ProbeTimeout,
			DialOptions: []grpc.DialOption{grpc.WithDisableServiceConfig()},
			// Its retry warnings would print every failed write of a failover.
			Logger: zap.NewNop(),
		}); err != nil {
			return fmt.Errorf("etcd client for %s: %w", s.Name, err)
		}
		c.Servers = append(c.Servers, s)
		if err := c.Launch(s); err != nil {
			return err
		}
	}
	_, _, err = c.WaitHealthy(ctx, time.Until(deadline))
	return err
}

// serverArgs are the flags of one server: keelson's defaults (raft timeouts
// included) except the addresses, ports and data dir, and no node agent.
func (c *Cluster) serverArgs(s *Server, n int) []string {
	args := []string{"server", "--data-dir", s.DataDir, "--node-name", s.Name,
		"--bind-address", s.IP, "--bootstrap-expect", strconv.Itoa(n),
		"--api-port", strconv.Itoa(c.Ports.API),
		"--raft-bind", net.JoinHostPort(s.IP, strconv.Itoa(c.Ports.Raft)),
		"--supervisor-port", strconv.Itoa(c.Ports.Supervisor),
		"--serf-port", strconv.Itoa(c.Ports.Serf),
		"--etcd-listen", s.EtcdAddr(c.Ports),
		"--disable-agent"}
	if !c.APIOn {
		args = append(args, "--disable-apiserver")
	}
	return append(args, c.extra...)
}

// Launch starts (or restarts) s with its flags and a fresh log file.
func (c *Cluster) Launch(s *Server) error {
	s.starts++
	logPath := filepath.Join(c.Dir, fmt.Sprintf("%s.%d.log", s.Name, s.starts))
	p, err := testproc.Start(testproc.Spec{Name: s.Name, Bin: c.bin, Args: s.args, LogPath: logPath, ProcessGroup: true})
	if err != nil {
		return err
	}
	s.Proc = p
	c.log.Debug("started", "server", s.Name, "pid", p.PID(), "log", logPath)
	return nil
}

// joinToken waits for the first server's full join token.
func (c *Cluster) joinToken(ctx context.Context, first *Server, deadline time.Time) (string, error) {
	path := filepath.Join(first.DataDir, "join-token")
	for {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
		if err := first.Proc.ExitedErr(); err != nil {
			return "", err
		}
		if time.Now().After(deadline) {
			return "", first.Proc.Failure(fmt.Errorf("no %s written in time", path))
		}
		if err := Sleep(ctx, PollInterval); err != nil {
			return "", err
		}
	}
}

// Kill sends SIGKILL to s and waits until it has been reaped. It returns the
// moment just before the signal was sent.
func (c *Cluster) Kill(s *Server) (time.Time, error) {
	t0 := time.Now()
	if err := syscall.Kill(s.Proc.PID(), syscall.SIGKILL); err != nil {
		return t0, fmt.Errorf("kill -9 %s (pid %d): %w", s.Name, s.Proc.PID(), err)
	}
	<-s.Proc.Exited()
	return t0, nil
}

// Stop stops every server (SIGTERM, SIGKILL after StopTimeout), closes the
// clients and removes the temp dir.
func (c *Cluster) Stop() {
	for _, s := range slices.Backward(c.Servers) {
		if s.Proc != nil {
			s.Proc.Stop(StopTimeout)
		}
		if s.Etcd != nil {
			_ = s.Etcd.Close()
		}
		// A server killed (Kill, or after StopTimeout) leaves its plugin
		// socket and executable dirs in the system temp dir.
		_ = host.RemoveRunDirs(s.DataDir)
	}
	_ = os.RemoveAll(c.Dir) // best effort; a leftover temp dir is harmless
}

// ByID returns the server with etcd member ID id, or nil.
func (c *Cluster) ByID(id uint64) *Server {
	for _, s := range c.Servers {
		if s.MemberID() == id {
			return s
		}
	}
	return nil
}

// view is what one server reported about the cluster.
type view struct {
	leader uint64
	term   uint64
	err    error
}

// leaderOf returns the leader every view names, or an error saying why
// there is none yet: a failed probe, a server without a leader, or servers
// that disagree.
func leaderOf(names []string, views []view) (uint64, error) {
	var leader uint64
	for i, v := range views {
		switch {
		case v.err != nil:
			return 0, fmt.Errorf("%s: %w", names[i], v.err)
		case v.leader == 0:
			return 0, fmt.Errorf("%s knows no leader (term %d)", names[i], v.term)
		case leader != 0 && v.leader != leader:
			return 0, fmt.Errorf("servers disagree on the leader: %s names %x, %s names %x", names[0], leader, names[i], v.leader)
		}
		leader = v.leader
	}
	return leader, nil
}

// Health checks every server once: all running, all naming the same leader
// through etcd Status, and, with kube-apiserver, all answering /readyz 200.
func (c *Cluster) Health(ctx context.Context) (*Server, uint64, error) {
	names := make([]string, len(c.Servers))
	views := make([]view, len(c.Servers))
	for i, s := range c.Servers {
		names[i] = s.Name
		if err := s.Proc.ExitedErr(); err != nil {
			return nil, 0, err
		}
		pctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
		st, err := s.Etcd.Status(pctx, s.EtcdAddr(c.Ports))
		cancel()
		if err != nil {
			views[i] = view{err: err}
			continue
		}
		views[i] = view{leader: st.Leader, term: st.RaftTerm}
	}
	id, err := leaderOf(names, views)
	if err != nil {
		return nil, 0, err
	}
	leader := c.ByID(id)
	if leader == nil {
		return nil, 0, fmt.Errorf("leader id %x is no server of this cluster", id)
	}
	if c.APIOn {
		for _, s := range c.Servers {
			if err := c.Readyz(ctx, s); err != nil {
				return nil, 0, fmt.Errorf("%s: %w", s.Name, err)
			}
		}
	}
	return leader, views[0].term, nil
}

// WaitHealthy polls health until it passes or timeout, and returns the
// leader and its term.
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) (*Server, uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		leader, term, err := c.Health(ctx)
		if err == nil {
			return leader, term, nil
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		for _, s := range c.Servers {
			if dead := s.Proc.ExitedErr(); dead != nil {
				return nil, 0, dead
			}
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("cluster not healthy after %v: %w", timeout, err)
		}
		if err := Sleep(ctx, PollInterval); err != nil {
			return nil, 0, err
		}
	}
}

// Followers are the servers other than leader, in order.
func (c *Cluster) Followers(leader *Server) []*Server {
	var fs []*Server
	for _, s := range c.Servers {
		if s != leader {
			fs = append(fs, s)
		}
	}
	return fs
}

// freePortsOn finds n distinct ports that are free on every address of
// addrs, so each server can bind the same port numbers on its own address.
func freePortsOn(addrs []string, n int) ([]int, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	var found []int
	for attempt := 0; len(found) < n; attempt++ {
		if attempt > 100 {
			return nil, fmt.Errorf("no port free on all of %v after 100 tries", addrs)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			return nil, fmt.Errorf("find free port on %s: %w", addrs[0], err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		group := []net.Listener{l}
		ok := true
		for _, a := range addrs[1:] {
			o, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			group = append(group, o)
		}
		// Held until all n are chosen so they differ.
		held = append(held, group...)
		if ok {
			found = append(found, port)
		}
	}
	return found, nil
}

// Sleep waits d or until ctx is done, whichever comes first.
func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
