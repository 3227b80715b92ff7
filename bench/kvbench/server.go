package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

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
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been reaped
	waitErr  error         // valid after exited is closed
}

const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
	logTailLines = 20
)

// freePort asks the kernel for an unused loopback port. The port is released
// before the server binds it; a collision shows up as a start failure.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func serverArgs(f flavor, dataDir string, clientPort, peerPort int) []string {
	client := "127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "127.0.0.1:" + strconv.Itoa(peerPort)
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
	clientPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", spec.Label, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(abs, serverArgs(spec.Flavor, filepath.Join(dir, "data"), clientPort, peerPort)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", spec.Label, abs, err)
	}
	s := &server{spec: spec, dir: dir, logPath: logPath, cmd: cmd, exited: make(chan struct{}),
		endpoint: "127.0.0.1:" + strconv.Itoa(clientPort)}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	return s, nil
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
		case <-s.exited:
			return s.failure(fmt.Errorf("exited before serving: %v", s.waitErr))
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

// failure wraps err with the server's identity and the tail of its log, so
// a failed start can be diagnosed from the bench output alone.
func (s *server) failure(err error) error {
	// The log's directory is removed on stop, so its tail is copied here.
	return fmt.Errorf("%s (%s %s): %w\n--- last %d lines of its output ---\n%s",
		s.spec.Label, s.spec.Bin, strings.Join(s.cmd.Args[1:], " "), err,
		logTailLines, tail(s.logPath, logTailLines))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM, escalates to SIGKILL after stopTimeout, and removes
// the data dir.
func (s *server) stop() {
	defer os.RemoveAll(s.dir)
	select {
	case <-s.exited:
		return
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = s.cmd.Process.Kill()
	}
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill() // it ignored SIGTERM; the figures are already taken
		<-s.exited
	}
}
