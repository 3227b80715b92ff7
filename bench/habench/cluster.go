package main

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
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"k8s.io/client-go/rest"
)

const (
	// pollInterval bounds how late a readiness or health check notices.
	pollInterval = 100 * time.Millisecond
	// stopTimeout is how long a server gets to exit after SIGTERM before SIGKILL.
	stopTimeout = 15 * time.Second
	// probeTimeout bounds one Status or /readyz call.
	probeTimeout = 2 * time.Second
)

// ports are the listening ports every server of a cluster uses, each on its
// own address. Joining servers assume the first server's supervisor and serf
// ports equal their own, so one set serves all.
type ports struct {
	API, Raft, Supervisor, Serf, Etcd int
}

// server is one keelson server of a cluster and the clients the bench talks
// to it with.
type server struct {
	name    string
	ip      string
	dataDir string
	args    []string // after `keelson server`; the same on every start
	starts  int      // how many times it was started (names the log files)
	proc    *testproc.Process
	etcd    *clientv3.Client // this server's --etcd-listen endpoint only
	rest    *rest.Config     // nil until the server wrote its admin kubeconfig
}

// memberID is the etcd member ID keelson reports for the server.
func (s *server) memberID() uint64 { return kvserver.MemberID(s.name) }

func (s *server) etcdAddr(p ports) string { return net.JoinHostPort(s.ip, strconv.Itoa(p.Etcd)) }

// cluster is a set of keelson servers on loopback addresses of this host.
type cluster struct {
	log     *slog.Logger
	bin     string
	dir     string // temp dir of every data dir and log; removed by stop
	apiOn   bool   // servers run the embedded kube-apiserver
	extra   []string
	ports   ports
	servers []*server
}

// clusterSpec says what cluster to start.
type clusterSpec struct {
	label     string // names the temp dir and log lines
	bin       string
	workDir   string
	addrs     []string // one server per address; the first bootstraps
	apiServer bool     // without it: --disable-apiserver (store and etcd API only)
	extraArgs []string // appended to every server's flags
}

// startCluster starts one server per address, the first bootstrapping and
// the others joining it with its token, and returns once every server is
// healthy (see waitHealthy). On failure it stops whatever it started.
func startCluster(ctx context.Context, log *slog.Logger, spec clusterSpec, timeout time.Duration) (*cluster, error) {
	dir, err := os.MkdirTemp(spec.workDir, "habench-"+spec.label+"-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir under %s: %w", spec.workDir, err)
	}
	c := &cluster{log: log.With("cluster", spec.label), bin: spec.bin, dir: dir, apiOn: spec.apiServer, extra: spec.extraArgs}
	if err := c.start(ctx, spec, timeout); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) start(ctx context.Context, spec clusterSpec, timeout time.Duration) error {
	ps, err := freePortsOn(spec.addrs, 5)
	if err != nil {
		return err
	}
	c.ports = ports{API: ps[0], Raft: ps[1], Supervisor: ps[2], Serf: ps[3], Etcd: ps[4]}
	deadline := time.Now().Add(timeout)
	for i, ip := range spec.addrs {
		s := &server{name: fmt.Sprintf("s%d", i+1), ip: ip}
		s.dataDir = filepath.Join(c.dir, s.name)
		s.args = c.serverArgs(s, len(spec.addrs))
		if i > 0 {
			token, err := c.joinToken(ctx, c.servers[0], deadline)
			if err != nil {
				return err
			}
			s.args = append(s.args, "--join", spec.addrs[0], "--token", token)
		}
		if s.etcd, err = clientv3.New(clientv3.Config{
			Endpoints: []string{s.etcdAddr(c.ports)}, DialTimeout: probeTimeout,
			DialOptions: []grpc.DialOption{grpc.WithDisableServiceConfig()},
			// Its retry warnings would print every failed write of a failover.
			Logger: zap.NewNop(),
		}); err != nil {
			return fmt.Errorf("etcd client for %s: %w", s.name, err)
		}
		c.servers = append(c.servers, s)
		if err := c.launch(s); err != nil {
			return err
		}
	}
	_, _, err = c.waitHealthy(ctx, time.Until(deadline))
	return err
}

// serverArgs are the flags of one server: keelson's defaults (raft timeouts
// included) except the addresses, ports and data dir, and no node agent.
func (c *cluster) serverArgs(s *server, n int) []string {
	args := []string{"server", "--data-dir", s.dataDir, "--node-name", s.name,
		"--bind-address", s.ip, "--bootstrap-expect", strconv.Itoa(n),
		"--api-port", strconv.Itoa(c.ports.API),
		"--raft-bind", net.JoinHostPort(s.ip, strconv.Itoa(c.ports.Raft)),
		"--supervisor-port", strconv.Itoa(c.ports.Supervisor),
		"--serf-port", strconv.Itoa(c.ports.Serf),
		"--etcd-listen", s.etcdAddr(c.ports),
		"--disable-agent"}
	if !c.apiOn {
		args = append(args, "--disable-apiserver")
	}
	return append(args, c.extra...)
}

// launch starts (or restarts) s with its flags and a fresh log file.
func (c *cluster) launch(s *server) error {
	s.starts++
	logPath := filepath.Join(c.dir, fmt.Sprintf("%s.%d.log", s.name, s.starts))
	p, err := testproc.Start(testproc.Spec{Name: s.name, Bin: c.bin, Args: s.args, LogPath: logPath, ProcessGroup: true})
	if err != nil {
		return err
	}
	s.proc = p
	c.log.Debug("started", "server", s.name, "pid", p.PID(), "log", logPath)
	return nil
}

// joinToken waits for the first server's full join token.
func (c *cluster) joinToken(ctx context.Context, first *server, deadline time.Time) (string, error) {
	path := filepath.Join(first.dataDir, "join-token")
	for {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
		if err := first.proc.ExitedErr(); err != nil {
			return "", err
		}
		if time.Now().After(deadline) {
			return "", first.proc.Failure(fmt.Errorf("no %s written in time", path))
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return "", err
		}
	}
}

// kill sends SIGKILL to s and waits until it has been reaped. It returns the
// moment just before the signal was sent.
func (c *cluster) kill(s *server) (time.Time, error) {
	t0 := time.Now()
	if err := syscall.Kill(s.proc.PID(), syscall.SIGKILL); err != nil {
		return t0, fmt.Errorf("kill -9 %s (pid %d): %w", s.name, s.proc.PID(), err)
	}
	<-s.proc.Exited()
	return t0, nil
}

// stop stops every server (SIGTERM, SIGKILL after stopTimeout), closes the
// clients and removes the temp dir.
func (c *cluster) stop() {
	for _, s := range slices.Backward(c.servers) {
		if s.proc != nil {
			s.proc.Stop(stopTimeout)
		}
		if s.etcd != nil {
			_ = s.etcd.Close()
		}
	}
	_ = os.RemoveAll(c.dir) // best effort; a leftover temp dir is harmless
}

// byID returns the server with etcd member ID id, or nil.
func (c *cluster) byID(id uint64) *server {
	for _, s := range c.servers {
		if s.memberID() == id {
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

// health checks every server once: all running, all naming the same leader
// through etcd Status, and, with kube-apiserver, all answering /readyz 200.
func (c *cluster) health(ctx context.Context) (*server, uint64, error) {
	names := make([]string, len(c.servers))
	views := make([]view, len(c.servers))
	for i, s := range c.servers {
		names[i] = s.name
		if err := s.proc.ExitedErr(); err != nil {
			return nil, 0, err
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		st, err := s.etcd.Status(pctx, s.etcdAddr(c.ports))
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
	leader := c.byID(id)
	if leader == nil {
		return nil, 0, fmt.Errorf("leader id %x is no server of this cluster", id)
	}
	if c.apiOn {
		for _, s := range c.servers {
			if err := c.readyz(ctx, s); err != nil {
				return nil, 0, fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}
	return leader, views[0].term, nil
}

// waitHealthy polls health until it passes or timeout, and returns the
// leader and its term.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) (*server, uint64, error) {
	deadline := time.Now().Add(timeout)
	for {
		leader, term, err := c.health(ctx)
		if err == nil {
			return leader, term, nil
		}
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		for _, s := range c.servers {
			if dead := s.proc.ExitedErr(); dead != nil {
				return nil, 0, dead
			}
		}
		if time.Now().After(deadline) {
			return nil, 0, fmt.Errorf("cluster not healthy after %v: %w", timeout, err)
		}
		if err := sleep(ctx, pollInterval); err != nil {
			return nil, 0, err
		}
	}
}

// followers are the servers other than leader, in order.
func (c *cluster) followers(leader *server) []*server {
	var fs []*server
	for _, s := range c.servers {
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

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
