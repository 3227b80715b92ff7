package ha

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keelson/keelson/internal/testproc"
)

// Generous deadlines: the machine is shared and slow at times. They bound
// waiting only; no test asserts how long anything took.
const (
	storeReadyTimeout  = 2 * time.Minute
	serverReadyTimeout = 4 * time.Minute
)

// Server is one `keelson server` in its own namespace. Its data dir
// outlives the process, so it can be restarted after a kill.
type Server struct {
	*Host
	bin     string
	dataDir string
	logDir  string   // beside the data dir, so a full data disk keeps the logs
	args    []string // flags after `keelson server`
	apiOn   bool     // kube-apiserver runs (no --disable-apiserver)

	mu      sync.Mutex
	runs    int // processes started so far; names the log files
	logPath string
	proc    *testproc.Process
	paused  bool

	client  *clientv3.Client
	etcdTLS *tls.Config // the etcd listener is off loopback: client certificates
}

// EtcdAddr is the server's etcd API address on the bridge.
func (s *Server) EtcdAddr() string { return s.IP + ":2379" }

// DataDir is where the server keeps its raft log, snapshots and logs.
func (s *Server) DataDir() string { return s.dataDir }

// Client is an etcd client of this server only (no failover to others), so
// that a workload chooses which server serves each request. It reconnects by
// itself across restarts.
func (s *Server) Client() *clientv3.Client { return s.client }

func (s *Server) newClient(t testing.TB) {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.EtcdAddr()},
		TLS:         s.etcdTLS,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", s.EtcdAddr(), err)
	}
	s.client = c
}

// Start runs a new process on the data dir and waits until its store is
// ready (and the Kubernetes API, when it runs one).
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.launch(t)
	s.WaitReady(t)
}

// launch starts the process without waiting for it to be ready: a joining
// server is not ready before the cluster has bootstrapped.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		t.Fatalf("%s already running (pid %d)", s.Name, s.proc.PID())
	}
	s.runs++
	s.logPath = filepath.Join(s.logDir, fmt.Sprintf("server-%d.log", s.runs))
	// ip netns exec and unshare exec without forking, and sh execs keelson:
	// the PID we hold is keelson's, which is what the signals must reach.
	// Each server gets its own UTS namespace because the embedded
	// kube-apiserver names its identity lease after the hostname.
	argv := []string{"netns", "exec", s.NS, "unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`,
		s.Name, s.bin, "server"}
	p, err := testproc.Start(testproc.Spec{Name: s.Name, Bin: "ip", Args: append(argv, s.args...), LogPath: s.logPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: started pid %d (run %d), log %s", s.Name, p.PID(), s.runs, s.logPath)
	s.proc = p
	s.paused = false
}

// WaitReady waits until the current process logs that its store is ready
// (and its Kubernetes API, when it runs one).
func (s *Server) WaitReady(t testing.TB) {
	t.Helper()
	s.waitLog(t, `msg="store ready"`, storeReadyTimeout)
	if s.apiOn {
		s.waitLog(t, `msg="keelson server ready"`, serverReadyTimeout)
	}
}

func (s *Server) waitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		t.Fatalf("%s: waiting for %s from a server that is not running", s.Name, want)
	}
	if err := p.WaitLog(want, timeout); err != nil {
		t.Fatal(err)
	}
}

// Running reports whether a process is alive (paused or not).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && s.proc.Running()
}

// exitErr is how the current process exited; nil while it runs.
func (s *Server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.Running() {
		return nil
	}
	return s.proc.WaitErr()
}

// Serving reports whether the server runs and is not paused.
func (s *Server) Serving() bool {
	s.mu.Lock()
	paused := s.paused
	s.mu.Unlock()
	return !paused && s.Running()
}

// Kill sends SIGKILL to the current process, if any, and reaps it.
func (s *Server) Kill() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.paused = false
	s.mu.Unlock()
	if p != nil {
		p.Kill()
	}
}

// Stop ends the current process, if any, as an operator would: SIGTERM,
// SIGKILL only after grace. It fails the test if the server had to be
// killed or exited with an error.
func (s *Server) Stop(t testing.TB, grace time.Duration) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.paused = false
	s.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.Stop(grace); err != nil {
		t.Errorf("%s: stopping pid %d: %v; log tail:\n%s", s.Name, p.PID(), err, p.LogTail(30))
	}
}

// SetBin makes the next start run bin: a rolling upgrade stops the server,
// swaps its binary and starts it again on the same data dir.
func (s *Server) SetBin(bin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bin = bin
}

// LogPath is the log of the current (or last) process.
func (s *Server) LogPath() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logPath
}

// Bin is the binary the server runs (or will run at its next start).
func (s *Server) Bin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bin
}

// Restart is a crash and a restart on the same data dir and address.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.Start(t)
}

// Pause stops the process with SIGSTOP; it keeps its sockets, so peers see
// a server that has simply gone silent.
func (s *Server) Pause(t testing.TB) { s.signal(t, syscall.SIGSTOP, true) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume(t testing.TB) { s.signal(t, syscall.SIGCONT, false) }

func (s *Server) signal(t testing.TB, sig syscall.Signal, paused bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		t.Fatalf("%s: %v to a server that is not running", s.Name, sig)
	}
	if err := s.proc.Signal(sig); err != nil {
		t.Fatal(err)
	}
	s.paused = paused
}

// DumpGoroutines makes a stuck server write every goroutine's stack to its
// log (Go's SIGQUIT, which ends the process) and logs the raft and bbolt
// ones; the whole dump stays in the log when KEELSON_E2E_KEEP keeps the
// data dirs. The server is not running afterwards.
func (s *Server) DumpGoroutines(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || !p.Running() {
		return
	}
	if err := p.Signal(syscall.SIGQUIT); err != nil {
		t.Logf("%s: SIGQUIT for a goroutine dump: %v", s.Name, err)
		return
	}
	select {
	case <-p.Exited():
		t.Logf("%s: goroutines in raft and bbolt at SIGQUIT (the whole dump ends %s):\n%s",
			s.Name, s.logPath, raftGoroutines(s.logPath))
	case <-time.After(10 * time.Second):
		t.Logf("%s: no exit within 10s of SIGQUIT; no goroutine dump", s.Name)
	}
}

func (s *Server) dumpLogs(t testing.TB) {
	for i := 1; i <= s.runs; i++ {
		p := filepath.Join(s.logDir, fmt.Sprintf("server-%d.log", i))
		t.Logf("---- %s: tail of %s ----\n%s", s.Name, p, testproc.Tail(p, 50))
	}
}

// raftGoroutines returns the goroutine stacks of a Go crash dump in the log
// at path that run hashicorp/raft or bbolt code, at most 60 of them.
func raftGoroutines(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, g := range strings.Split(string(b), "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") || !(strings.Contains(g, "hashicorp/raft") || strings.Contains(g, "bbolt")) {
			continue
		}
		if out = append(out, g); len(out) == 60 {
			break
		}
	}
	return strings.Join(out, "\n\n")
}
