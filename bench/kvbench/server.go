package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keelson/keelson/bench/internal/loopback"
	"github.com/keelson/keelson/internal/testproc"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// flavor says which command line a binary understands.
type flavor string

const (
	flavorEtcd    flavor = "etcd"
	flavorKeelson flavor = "keelson"
)

// serverSpec names a binary under test and how to start it.
type serverSpec struct {
	Label  string // column name in the report
	Bin    string
	Flavor flavor
}

// server is one running single-member instance with its own data dir.
type server struct {
	spec     serverSpec
	dir      string // removed by stop
	endpoint string
	proc     *testproc.Process
}

const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

func serverArgs(f flavor, dataDir string, clientPort, peerPort int) []string {
	client := loopback.HostPort(clientPort)
	peer := loopback.HostPort(peerPort)
	if f == flavorKeelson {
		return []string{"server", "--data-dir", dataDir, "--etcd-listen", client,
			"--raft-bind", peer, "--disable-apiserver", "--disable-agent"}
	}
	return []string{"--name", "default", "--data-dir", dataDir,
		"--listen-client-urls", "http://" + client, "--advertise-client-urls", "http://" + client,
		"--listen-peer-urls", "http://" + peer, "--initial-advertise-peer-urls", "http://" + peer,
		"--initial-cluster", "default=http://" + peer}
}

// startServer launches spec on fresh ports and a fresh data dir under
// workDir, and returns once it serves linearizable reads.
func startServer(ctx context.Context, spec serverSpec, workDir string) (*server, error) {
	abs, err := filepath.Abs(spec.Bin)
	if err != nil {
		return nil, fmt.Errorf("%s binary %q: %w", spec.Label, spec.Bin, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("%s binary %q not found (build it first): %w", spec.Label, spec.Bin, err)
	}
	dir, err := os.MkdirTemp(workDir, "kvbench-"+spec.Label+"-")
	if err != nil {
		return nil, fmt.Errorf("create data dir for %s: %w", spec.Label, err)
	}
	s, err := launch(spec, abs, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func launch(spec serverSpec, abs, dir string) (*server, error) {
	ports, err := loopback.FreePorts(2)
	if err != nil {
		return nil, err
	}
	clientPort, peerPort := ports[0], ports[1]
	p, err := testproc.Start(testproc.Spec{Name: spec.Label, Bin: abs, Args: serverArgs(spec.Flavor, filepath.Join(dir, "data"), clientPort, peerPort), LogPath: filepath.Join(dir, "server.log"), ProcessGroup: true})
	if err != nil {
		return nil, err
	}
	return &server{spec: spec, dir: dir, proc: p, endpoint: loopback.HostPort(clientPort)}, nil
}

// waitReady polls Status and then a linearizable Get: the latter only
// succeeds once the single member has elected itself leader.
func (s *server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.endpoint},
		DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return s.failure(fmt.Errorf("dial %s: %w", s.endpoint, err))
	}
	defer cli.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-s.proc.Exited():
			return s.failure(fmt.Errorf("exited before serving: %v", s.proc.WaitErr()))
		case <-ctx.Done():
			return s.failure(fmt.Errorf("not ready on %s after %v: %w", s.endpoint, readyTimeout, lastErr))
		case <-tick.C:
		}
		if lastErr = probe(ctx, cli, s.endpoint); lastErr == nil {
			return nil
		}
	}
}

func probe(ctx context.Context, cli *clientv3.Client, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := cli.Status(ctx, endpoint); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if _, err := cli.Get(ctx, "kvbench-ready"); err != nil {
		return fmt.Errorf("linearizable get: %w", err)
	}
	return nil
}

// failure wraps err with the server's command line and the tail of its log,
// so a failed start can be diagnosed from the bench output alone.
func (s *server) failure(err error) error { return s.proc.Failure(err) }

func (s *server) pid() int { return s.proc.PID() }

// stop sends SIGTERM, escalates to SIGKILL after stopTimeout, and removes
// the data dir.
func (s *server) stop() {
	defer os.RemoveAll(s.dir)
	s.proc.Stop(stopTimeout)
}
