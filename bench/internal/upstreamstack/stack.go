// Package upstreamstack starts upstream Kubernetes' control plane for a
// benchmark to compare keelson with: etcd, kube-apiserver with the flags
// keelson embeds it with, kube-controller-manager and kube-scheduler, on
// loopback in a fresh temp dir, and returns once etcd and kube-apiserver
// are ready.
package upstreamstack

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/bench/internal/loopback"
	"github.com/keelson/keelson/bench/internal/probe"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/apiserver"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/testproc"
)

// Spec is what to start.
type Spec struct {
	// EtcdBin, APIServerBin, KCMBin and SchedulerBin are the upstream
	// binaries (scripts/bench-scale.sh builds them into bin/).
	EtcdBin, APIServerBin, KCMBin, SchedulerBin string
	// WorkDir is where the stack's temp dir (data, certificates, logs) goes;
	// Prefix starts its name.
	WorkDir, Prefix string
	// KCMArgs, when set, returns kube-controller-manager flags added to
	// KCMArgs' own (e.g. --controllers), given the stack's certificates.
	KCMArgs func(b *pki.Bundle) []string
	// ReadyTimeout bounds the wait for etcd's and kube-apiserver's health
	// (0: 3 minutes).
	ReadyTimeout time.Duration
	// ProbeTimeout bounds one health check (0: 2 seconds).
	ProbeTimeout time.Duration
}

func (spec Spec) withDefaults() Spec {
	if spec.ReadyTimeout == 0 {
		spec.ReadyTimeout = 3 * time.Minute
	}
	if spec.ProbeTimeout == 0 {
		spec.ProbeTimeout = 2 * time.Second
	}
	return spec
}

// Stack is a running upstream control plane.
type Stack struct {
	Dir        string // data, certificates and logs; removed by Stop
	Kubeconfig string // the admin kubeconfig
	// REST reaches kube-apiserver as the admin, at client-go's default limits.
	REST    *rest.Config
	EtcdURL string // etcd's client URL (plain HTTP), for its /metrics
	Bundle  *pki.Bundle
	// Procs are etcd, kube-apiserver, kube-controller-manager and
	// kube-scheduler, in the order started.
	Procs []*testproc.Process
}

// KCMArgs are the kube-controller-manager flags every benchmark runs it
// with: no leader election, no serving port, one client identity, and the
// service-account signing key and root CA of the cluster it joins.
func KCMArgs(kubeconfig, serviceAccountKey, rootCA string) []string {
	return []string{"--kubeconfig", kubeconfig, "--leader-elect=false",
		"--use-service-account-credentials=false", "--secure-port=0",
		"--service-account-private-key-file", serviceAccountKey, "--root-ca-file", rootCA}
}

// Start starts the stack: certificates (keelson's own pki, so both sides
// present the same kind), etcd until /health answers, kube-apiserver until
// /readyz is 200, then kube-controller-manager and kube-scheduler without
// waiting for them.
func Start(ctx context.Context, spec Spec) (*Stack, error) {
	dir, err := os.MkdirTemp(spec.WorkDir, spec.Prefix)
	if err != nil {
		return nil, fmt.Errorf("temp dir under %s: %w", spec.WorkDir, err)
	}
	s := &Stack{Dir: dir}
	if err := s.start(ctx, spec.withDefaults()); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// stopTimeout is how long each process gets to exit after SIGTERM.
const stopTimeout = 20 * time.Second

// Stop stops the processes, last started first, and removes Dir.
func (s *Stack) Stop() {
	for i := len(s.Procs) - 1; i >= 0; i-- {
		s.Procs[i].Stop(stopTimeout)
	}
	_ = os.RemoveAll(s.Dir)
}

// Alive says whether every process still runs.
func (s *Stack) Alive() bool {
	for _, p := range s.Procs {
		if p.ExitedErr() != nil {
			return false
		}
	}
	return true
}

func (s *Stack) run(name, bin string, args ...string) (*testproc.Process, error) {
	p, err := testproc.Start(testproc.Spec{Name: name, Bin: bin, Args: args, LogPath: filepath.Join(s.Dir, name+".log"), ProcessGroup: true})
	if err == nil {
		s.Procs = append(s.Procs, p)
	}
	return p, err
}

func (s *Stack) start(ctx context.Context, spec Spec) error {
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return err
	}
	s.Bundle, err = pki.Ensure(filepath.Join(s.Dir, "pki"), pki.Options{
		ServiceCIDR: config.DefaultServer().APIServer.ServiceCIDR,
		IPs:         []net.IP{net.IPv4(127, 0, 0, 1)},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("certificates for upstream: %w", err)
	}
	s.Kubeconfig = filepath.Join(s.Dir, "admin.kubeconfig")
	if _, err := pki.WriteKubeconfig(s.Kubeconfig, "https://"+loopback.HostPort(ports[2]), s.Bundle.CA.CertFile, s.Bundle.Admin); err != nil {
		return fmt.Errorf("admin kubeconfig for upstream: %w", err)
	}
	if s.REST, err = clientcmd.BuildConfigFromFlags("", s.Kubeconfig); err != nil {
		return err
	}

	s.EtcdURL = "http://" + loopback.HostPort(ports[0])
	peer := "http://" + loopback.HostPort(ports[1])
	etcd, err := s.run("etcd", spec.EtcdBin, EtcdArgs(filepath.Join(s.Dir, "etcd"), s.EtcdURL, peer)...)
	if err != nil {
		return err
	}
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}}
	if err := waitFor(ctx, spec, etcd, "etcd /health", func(ctx context.Context) error {
		return probe.HTTPOK(ctx, plain, s.EtcdURL+"/health")
	}); err != nil {
		return err
	}
	kcfg := APIServerConfig(s.Bundle, s.Dir, ports[2], s.EtcdURL)
	if err := kcfg.WriteAdmissionConfig(); err != nil {
		return err
	}
	kas, err := s.run("kube-apiserver", spec.APIServerBin, kcfg.Args()...)
	if err != nil {
		return err
	}
	readyz, closeIdle, err := probe.Readyz(s.REST)
	if err != nil {
		return err
	}
	defer closeIdle()
	if err := waitFor(ctx, spec, kas, "kube-apiserver /readyz", readyz); err != nil {
		return err
	}
	kcmArgs := KCMArgs(s.Kubeconfig, s.Bundle.ServiceAccountKey, s.Bundle.CA.CertFile)
	if spec.KCMArgs != nil {
		kcmArgs = append(kcmArgs, spec.KCMArgs(s.Bundle)...)
	}
	if _, err := s.run("kube-controller-manager", spec.KCMBin, kcmArgs...); err != nil {
		return err
	}
	_, err = s.run("kube-scheduler", spec.SchedulerBin, "--kubeconfig", s.Kubeconfig, "--leader-elect=false", "--secure-port=0")
	return err
}

// EtcdArgs is a single-member etcd on loopback without TLS, serving
// clients at clientURL.
func EtcdArgs(dataDir, clientURL, peerURL string) []string {
	return []string{"--name", "default", "--data-dir", dataDir,
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default=" + peerURL}
}

// APIServerConfig is the configuration keelson embeds kube-apiserver with
// (core/apiserver), for the upstream binary on etcdURL: the same flags and
// Pod Security admission default (WriteAdmissionConfig writes its file),
// so both sides run the same admission, authorization and authentication
// chain. dataDir/apiserver is the cert dir.
func APIServerConfig(b *pki.Bundle, dataDir string, securePort int, etcdURL string) apiserver.Config {
	return apiserver.Config{DataDir: dataDir, BindAddress: "127.0.0.1", SecurePort: securePort,
		EtcdServers: []string{etcdURL}, Bundle: b, PodSecurity: apiserver.DefaultPodSecurity()}
}

// waitFor polls check until it passes, p exits or spec.ReadyTimeout passes.
func waitFor(ctx context.Context, spec Spec, p *testproc.Process, what string, check func(context.Context) error) error {
	return p.WaitReady(ctx, spec.ReadyTimeout, 100*time.Millisecond, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, spec.ProbeTimeout)
		defer cancel()
		if err := check(cctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}
