package apiserver

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	encryptioncontroller "k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/core/pki"
)

// env is the one kube-apiserver shared by every integration test: Run is once
// per process, so TestMain starts it and the tests only read it.
var env struct {
	cfg        Config
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface
	logs       *lockedBuffer
	elapsed    time.Duration
	etcd       string // host:port of the etcd kube-apiserver stores in
}

// lockedBuffer collects the server's logs; they are printed only on failure.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) tail(n int) string {
	lines := strings.Split(b.String(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testing.Short() {
		fmt.Println("skipping kube-apiserver integration tests in -short mode")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keelson-apiserver-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	etcd, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "start etcd:", err)
		return 1
	}
	defer etcd.Close()

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	if err := startAPIServer(ctx, dir, etcd.Clients[0].Addr().String(), runErr); err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, err)
		fmt.Fprintln(os.Stderr, env.logs.tail(80))
		return 1
	}
	code := m.Run()
	cancel()
	stopping := time.Now()
	select {
	case err := <-runErr:
		fmt.Printf("kube-apiserver stopped %v after its context ended\n", time.Since(stopping).Round(time.Millisecond))
		if err != nil {
			fmt.Fprintln(os.Stderr, "Run returned after shutdown:", err)
			code = 1
		}
	case <-time.After(2 * time.Minute):
		fmt.Fprintln(os.Stderr, "Run did not return within 2m of its context ending")
		code = 1
	}
	if code != 0 {
		fmt.Fprintln(os.Stderr, env.logs.tail(80))
	}
	return code
}

func startEtcd(dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	// Its own logs are noise here (it logs errors on a normal Close); failures
	// surface through StartEtcd and e.Err().
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, peer := url.URL{Scheme: "http", Host: freeAddr()}, url.URL{Scheme: "http", Host: freeAddr()}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(time.Minute):
		e.Close()
		return nil, fmt.Errorf("etcd in %s not ready after 1m", dir)
	}
}

func startAPIServer(ctx context.Context, dir, etcdAddr string, runErr chan error) error {
	env.logs = &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(env.logs, nil))
	bundle, err := pki.Ensure(filepath.Join(dir, "tls"), pki.Options{
		ServiceCIDR: DefaultServiceCIDR, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Logger: logger,
	})
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(freeAddr())
	if err != nil {
		return err
	}
	env.cfg = Config{
		DataDir:     dir,
		BindAddress: "127.0.0.1",
		// Upstream's integration tests advertise a routable-looking address too:
		// Endpoints validation refuses loopback.
		AdvertiseAddress: "10.1.1.1",
		SecurePort:       mustAtoi(port),
		EtcdServers:      []string{"http://" + etcdAddr},
		Bundle:           bundle,
		EncryptionConfig: bundle.EncryptionConfig,
		Logger:           logger,
	}
	env.etcd = etcdAddr
	// Upstream polls the encryption configuration every minute; the
	// rotation test should not wait that long.
	encryptioncontroller.EncryptionConfigFileChangePollDuration = time.Second
	ready := make(chan time.Duration, 1)
	go func() { runErr <- Run(ctx, env.cfg, func(d time.Duration) { ready <- d }) }()
	select {
	case env.elapsed = <-ready:
	case err := <-runErr:
		return fmt.Errorf("Run returned before ready: %v", err)
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("kube-apiserver not ready after 5m")
	}
	env.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	server := "https://" + net.JoinHostPort("127.0.0.1", port)
	if _, err := pki.WriteKubeconfig(env.kubeconfig, server, bundle.CA.CertFile, bundle.Admin); err != nil {
		return err
	}
	env.rest, err = clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	if err != nil {
		return err
	}
	// client-go's default 5 QPS would make the tests measure its rate limiter.
	env.rest.QPS, env.rest.Burst = 200, 400
	env.client, err = kubernetes.NewForConfig(env.rest)
	return err
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer l.Close()
	return l.Addr().String()
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// requireServer skips tests in -short mode, where TestMain starts nothing.
func requireServer(t *testing.T) {
	t.Helper()
	if env.client == nil {
		t.Skip("kube-apiserver integration test; not run with -short")
	}
}
