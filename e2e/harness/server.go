package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/internal/testproc"
	"github.com/keelson/keelson/plugins/builtin"
	"github.com/keelson/keelson/plugins/host"
)

// Generous deadlines: the machine is shared and slow at times. They bound
// waiting only; no test asserts how long anything took.
const (
	StoreReadyTimeout  = 90 * time.Second
	ServerReadyTimeout = 3 * time.Minute
	StopTimeout        = 30 * time.Second
)

// handedOut remembers every port FreePort returned in this test binary: the
// kernel readily hands a port just closed to the next bind(0), so two calls
// in a row could return the same port (CI saw a server started with its API
// and supervisor ports equal).
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// no earlier call in this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 1000 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[p] {
			handedOut.ports[p] = true
			return p
		}
	}
	t.Fatalf("finding a free port: every port the kernel offered was handed out before")
	return 0
}

// ServerOptions are what differs between the servers tests start.
type ServerOptions struct {
	// DisableAPIServer runs the store only (--disable-apiserver).
	DisableAPIServer bool
	// KubeAPIServerArgs are passed as --kube-apiserver-arg key=value.
	KubeAPIServerArgs map[string]string
	// Args are extra flags, last.
	Args []string
	// IP is the loopback address every listener binds; default 127.0.0.1.
	IP string
	// NodeName is the server's --node-name; default e2e-0.
	NodeName string
	// Plugins lists the built-in plugins to run; nil runs none, so tests
	// that do not exercise plugins start fast and quiet. ["*"] runs all.
	Plugins []string
}

// server is one `keelson server` process and its data dir, which outlives
// the process so it can be restarted.
type Server struct {
	Bin      string
	opts     ServerOptions
	DataDir  string
	APIPort  int
	raftPort int
	etcdPort int
	serfPort int // gossip and supervisor ports: free ones, so servers can run side by side
	supPort  int

	runs    int    // processes started so far; names the log files
	LogPath string // log of the current process
	proc    *testproc.Process
}

// StartServer starts a server on free ports and a fresh data dir and waits
// until it is ready: the store only, or the Kubernetes API too. Every process
// it starts is killed when the test ends, and on failure the tail of every
// log is printed.
func StartServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	s := newServer(t, opts)
	s.Start(t)
	return s
}

// NewServer prepares a server like StartServer without starting it, so that
// a test can fill its data dir first (a restored snapshot); Start runs it.
func NewServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	return newServer(t, opts)
}

// RaftAddr is the server's raft address (--raft-bind).
func (s *Server) RaftAddr() string { return net.JoinHostPort(s.opts.IP, strconv.Itoa(s.raftPort)) }

// newServer prepares a server on free ports and a fresh data dir without
// starting it; its processes are killed when the test ends.
func newServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.NodeName == "" {
		opts.NodeName = "e2e-0"
	}
	s := &Server{
		Bin:      KeelsonBin(t),
		opts:     opts,
		DataDir:  t.TempDir(),
		APIPort:  FreePort(t),
		raftPort: FreePort(t),
		etcdPort: FreePort(t),
		serfPort: FreePort(t),
		supPort:  FreePort(t),
	}
	t.Cleanup(func() {
		s.Kill()
		RemovePluginRunDirs(t, s.DataDir)
		if t.Failed() {
			s.DumpLogs(t)
		}
	})
	return s
}

func (s *Server) args() []string {
	a := []string{"server",
		"--data-dir", s.DataDir,
		"--node-name", s.opts.NodeName,
		"--bind-address", s.opts.IP,
		"--api-port", strconv.Itoa(s.APIPort),
		"--raft-bind", net.JoinHostPort(s.opts.IP, strconv.Itoa(s.raftPort)),
		"--etcd-listen", s.EtcdAddr(),
		"--serf-port", strconv.Itoa(s.serfPort),
		"--supervisor-port", strconv.Itoa(s.supPort),
		"--disable-agent",
	}
	if s.opts.DisableAPIServer {
		a = append(a, "--disable-apiserver")
	}
	if !slices.Contains(s.opts.Plugins, "*") {
		off := []string{"*"}
		if len(s.opts.Plugins) > 0 {
			off = slices.DeleteFunc(builtin.Names(), func(n string) bool { return slices.Contains(s.opts.Plugins, n) })
		}
		for _, name := range off {
			a = append(a, "--disable-plugin", name)
		}
	}
	for k, v := range s.opts.KubeAPIServerArgs {
		a = append(a, "--kube-apiserver-arg", k+"="+v)
	}
	return append(a, s.opts.Args...)
}

// SerfAddr is the server's gossip address, for members that join its pool.
func (s *Server) SerfAddr() string { return net.JoinHostPort(s.opts.IP, strconv.Itoa(s.serfPort)) }

// EtcdAddr is the server's plain etcd API (--etcd-listen): on the server's
// IP when that is a loopback address, else on 127.0.0.1, since a server
// refuses a plain etcd listener off loopback.
func (s *Server) EtcdAddr() string {
	host := s.opts.IP
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(s.etcdPort))
}

// Name is the server's node name.
func (s *Server) Name() string { return s.opts.NodeName }

// SupervisorPort is the port that issues credentials to joining servers
// and node agents.
func (s *Server) SupervisorPort() int { return s.supPort }

// SerfPort is the server's gossip port.
func (s *Server) SerfPort() int { return s.serfPort }

// JoinToken is the full server token (cluster root) servers join with;
// node agents join with AgentTokenFile.
func (s *Server) JoinToken(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.DataDir, "join-token"))
	if err != nil {
		t.Fatalf("reading the join token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// AgentTokenFile waits for the server to write the cluster's agent token
// (the first server does, once its API server is ready) and returns the
// file, for node agents' --token-file.
func (s *Server) AgentTokenFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(s.DataDir, "agent-token")
	deadline := time.Now().Add(ServerReadyTimeout)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return path
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s wrote no %s within %s", s.opts.NodeName, path, ServerReadyTimeout)
	return ""
}

func (s *Server) Kubeconfig() string { return filepath.Join(s.DataDir, "admin.kubeconfig") }

// Start runs a new process on the data dir and waits until it is ready.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.launch(t)
	s.WaitReady(t)
}

// WaitReady waits until the store and, unless disabled, the API server of
// the current process are ready.
func (s *Server) WaitReady(t testing.TB) {
	t.Helper()
	s.WaitLog(t, `msg="store ready"`, StoreReadyTimeout)
	if !s.opts.DisableAPIServer {
		s.WaitLog(t, `msg="keelson server ready"`, ServerReadyTimeout)
		s.WaitReadyz(t)
	}
}

// launch starts a new process on the data dir without waiting.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	if s.proc != nil {
		t.Fatalf("server already running (pid %d)", s.proc.PID())
	}
	s.runs++
	s.LogPath = filepath.Join(s.DataDir, fmt.Sprintf("server-%d.log", s.runs))
	p, err := testproc.Start(testproc.Spec{Name: "keelson server", Bin: s.Bin, Args: s.args(), LogPath: s.LogPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started keelson server pid %d (run %d), log %s", p.PID(), s.runs, s.LogPath)
	s.proc = p
}

// WaitLog waits until the current process logs a line containing want, and
// fails early if the process exits first.
func (s *Server) WaitLog(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	if err := s.proc.WaitLog(want, timeout); err != nil {
		t.Fatal(err)
	}
}

// WaitReadyz polls /readyz as the admin until it answers ok.
func (s *Server) WaitReadyz(t testing.TB) {
	t.Helper()
	rc := s.Clientset(t).Discovery().RESTClient()
	err := s.proc.WaitReady(context.Background(), ServerReadyTimeout, 200*time.Millisecond, func(ctx context.Context) error {
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			return fmt.Errorf("/readyz: %v: %s", err, body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Running reports whether the current process is still alive.
func (s *Server) Running() bool { return s.proc != nil && s.proc.Running() }

// Kill sends SIGKILL to the current process, if any, and reaps it.
func (s *Server) Kill() {
	if s.proc == nil {
		return
	}
	s.proc.Kill()
	s.proc = nil
}

// Stop sends SIGTERM and waits for a clean exit (SIGKILL after StopTimeout).
func (s *Server) Stop() error {
	if s.proc == nil {
		return nil
	}
	err := s.proc.Stop(StopTimeout)
	s.proc = nil
	return err
}

// restartAfterKill is a crash and a restart on the same data dir and ports.
func (s *Server) RestartAfterKill(t testing.TB) {
	t.Helper()
	s.Kill()
	s.Start(t)
}

func (s *Server) DumpLogs(t testing.TB) {
	for i := 1; i <= s.runs; i++ {
		p := filepath.Join(s.DataDir, fmt.Sprintf("server-%d.log", i))
		t.Logf("---- tail of %s ----\n%s", p, testproc.Tail(p, 60))
	}
}

// etcd returns an etcd v3 client of the server's TCP etcd API, closed when
// the test ends. It reconnects by itself across restarts.
func (s *Server) Etcd(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.EtcdAddr()},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", s.EtcdAddr(), err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) RESTConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		t.Fatalf("loading admin kubeconfig %s: %v", s.Kubeconfig(), err)
	}
	cfg.Timeout = time.Minute
	return cfg
}

func (s *Server) Clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.RESTConfig(t))
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

// RemovePluginRunDirs removes the plugin socket and executable directories
// (in the temp dir) of a killed server or agent whose data dir is dataDir,
// and of its agent's node plugins: a server stopped cleanly removes its
// own, a killed one leaves them for its next start, which a test's never
// comes.
func RemovePluginRunDirs(t testing.TB, dataDir string) {
	for _, d := range []string{dataDir, config.AgentDir(dataDir)} {
		if err := host.RemoveRunDirs(d); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
}
