package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Generous deadlines: the machine is shared and slow at times. They bound
// waiting only; no test asserts how long anything took.
const (
	storeReadyTimeout  = 90 * time.Second
	serverReadyTimeout = 3 * time.Minute
	stopTimeout        = 30 * time.Second
)

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverOptions are what differs between the servers tests start.
type serverOptions struct {
	// DisableAPIServer runs the store only (--disable-apiserver).
	DisableAPIServer bool
	// KubeAPIServerArgs are passed as --kube-apiserver-arg key=value.
	KubeAPIServerArgs map[string]string
	// Args are extra flags, last.
	Args []string
}

// server is one `keelson server` process and its data dir, which outlives
// the process so it can be restarted.
type server struct {
	bin      string
	opts     serverOptions
	dataDir  string
	apiPort  int
	raftPort int
	etcdPort int
	serfPort int // gossip and supervisor ports: free ones, so servers can run side by side
	supPort  int

	runs    int    // processes started so far; names the log files
	logPath string // log of the current process
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process has been reaped
	waitErr error         // valid after exited is closed
}

// startServer starts a server on free ports and a fresh data dir and waits
// until it is ready: the store only, or the Kubernetes API too. Every process
// it starts is killed when the test ends, and on failure the tail of every
// log is printed.
func startServer(t testing.TB, opts serverOptions) *server {
	t.Helper()
	s := &server{
		bin:      harness.KeelsonBin(t),
		opts:     opts,
		dataDir:  t.TempDir(),
		apiPort:  freePort(t),
		raftPort: freePort(t),
		etcdPort: freePort(t),
		serfPort: freePort(t),
		supPort:  freePort(t),
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			s.dumpLogs(t)
		}
	})
	s.start(t)
	return s
}

func (s *server) args() []string {
	a := []string{"server",
		"--data-dir", s.dataDir,
		"--node-name", "e2e-0",
		"--bind-address", "127.0.0.1",
		"--api-port", strconv.Itoa(s.apiPort),
		"--raft-bind", "127.0.0.1:" + strconv.Itoa(s.raftPort),
		"--etcd-listen", s.etcdAddr(),
		"--serf-port", strconv.Itoa(s.serfPort),
		"--supervisor-port", strconv.Itoa(s.supPort),
		"--disable-agent",
	}
	if s.opts.DisableAPIServer {
		a = append(a, "--disable-apiserver")
	}
	for k, v := range s.opts.KubeAPIServerArgs {
		a = append(a, "--kube-apiserver-arg", k+"="+v)
	}
	return append(a, s.opts.Args...)
}

func (s *server) etcdAddr() string { return "127.0.0.1:" + strconv.Itoa(s.etcdPort) }

func (s *server) kubeconfig() string { return filepath.Join(s.dataDir, "admin.kubeconfig") }

// start runs a new process on the data dir and waits until it is ready.
func (s *server) start(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatalf("server already running (pid %d)", s.cmd.Process.Pid)
	}
	s.runs++
	s.logPath = filepath.Join(s.dataDir, fmt.Sprintf("server-%d.log", s.runs))
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatalf("creating server log: %v", err)
	}
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", s.bin, err)
	}
	t.Logf("started keelson server pid %d (run %d), log %s", cmd.Process.Pid, s.runs, s.logPath)
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		s.waitErr = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	s.waitLog(t, `msg="store ready"`, storeReadyTimeout)
	if !s.opts.DisableAPIServer {
		s.waitLog(t, `msg="keelson server ready"`, serverReadyTimeout)
		s.waitReadyz(t)
	}
}

// waitLog waits until the current process logs a line containing want, and
// fails early if the process exits first.
func (s *server) waitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(s.logPath)
		if bytes.Contains(b, []byte(want)) {
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("keelson server exited (%v) before logging %s; log tail:\n%s", s.waitErr, want, harness.Tail(s.logPath, 40))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("keelson server did not log %s within %s; log tail:\n%s", want, timeout, harness.Tail(s.logPath, 40))
		}
	}
}

// waitReadyz polls /readyz as the admin until it answers ok.
func (s *server) waitReadyz(t testing.TB) {
	t.Helper()
	rc := s.clientset(t).Discovery().RESTClient()
	ctx, cancel := context.WithTimeout(context.Background(), serverReadyTimeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return
		}
		last = fmt.Errorf("%v: %s", err, body)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("/readyz did not answer ok: %v; log tail:\n%s", last, harness.Tail(s.logPath, 40))
}

// running reports whether the current process is still alive.
func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the current process, if any, and reaps it.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after stopTimeout).
func (s *server) stop() error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.kill()
		return fmt.Errorf("keelson server did not exit within %s of SIGTERM", stopTimeout)
	}
	s.cmd = nil
	return s.waitErr
}

// restartAfterKill is a crash and a restart on the same data dir and ports.
func (s *server) restartAfterKill(t testing.TB) {
	t.Helper()
	s.kill()
	s.start(t)
}

func (s *server) dumpLogs(t testing.TB) {
	for i := 1; i <= s.runs; i++ {
		p := filepath.Join(s.dataDir, fmt.Sprintf("server-%d.log", i))
		t.Logf("---- tail of %s ----\n%s", p, harness.Tail(p, 60))
	}
}

// etcd returns an etcd v3 client of the server's TCP etcd API, closed when
// the test ends. It reconnects by itself across restarts.
func (s *server) etcd(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.etcdAddr()},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", s.etcdAddr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *server) restConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig())
	if err != nil {
		t.Fatalf("loading admin kubeconfig %s: %v", s.kubeconfig(), err)
	}
	cfg.Timeout = time.Minute
	return cfg
}

func (s *server) clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.restConfig(t))
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}
