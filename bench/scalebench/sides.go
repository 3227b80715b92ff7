package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/hacluster"
	"github.com/keelson/keelson/bench/internal/loopback"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/apiserver"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/testproc"
)

// namedPID is a process the bench reports the CPU and memory of.
type namedPID struct {
	Name string
	PID  int
}

// side is one control plane under load, started and ready.
type side struct {
	label string
	dir   string // logs
	// bench is the load's client; kubeconfig is the admin kubeconfig kwok
	// uses (on keelson another server than the bench's).
	bench      *rest.Config
	kubeconfig string
	apiservers []*rest.Config // every API server, for /metrics
	etcdURL    string         // upstream: etcd's client URL, for its /metrics
	// procs lists the side's processes now (plugins included).
	procs func() []namedPID
	// pluginRestarts sums the plugins' restarts; nil on upstream.
	pluginRestarts func(ctx context.Context) (int, error)
	// settled says whether the side finished starting its controllers;
	// nil where there is nothing to wait for.
	settled func(ctx context.Context) (bool, string)
	// alive says whether every process of the side still runs.
	alive func() bool
	stop  func()
}

const readyTimeout = 3 * time.Minute

// startKeelson starts three keelson servers on 127.0.0.1-3 without node
// agents (bench/internal/hacluster, as habench does).
func startKeelson(ctx context.Context, log *slog.Logger, o options) (*side, error) {
	c, err := hacluster.Start(ctx, log, hacluster.Spec{Label: "scale", Bin: o.keelsonBin, WorkDir: o.workDir,
		Addrs: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, APIServer: true, ExtraArgs: o.keelsonArgs}, readyTimeout)
	if err != nil {
		return nil, fmt.Errorf("keelson cluster: %w", err)
	}
	label := "keelson (3 servers)"
	if len(o.keelsonArgs) > 0 {
		label = "keelson (3 servers, " + strings.Join(o.keelsonArgs, " ") + ")"
	}
	s := &side{label: label, dir: c.Dir, stop: c.Stop,
		kubeconfig: filepath.Join(c.Servers[0].DataDir, "admin.kubeconfig")}
	for _, srv := range c.Servers {
		cfg, err := c.RESTConfig(srv)
		if err != nil {
			c.Stop()
			return nil, err
		}
		s.apiservers = append(s.apiservers, cfg)
	}
	s.bench = benchConfig(s.apiservers[1])
	s.procs = func() []namedPID {
		var out []namedPID
		for _, srv := range c.Servers {
			out = append(out, namedPID{"keelson server " + srv.Name, srv.Proc.PID()})
			kids, _ := procstat.Children(srv.Proc.PID())
			for pid, cmd := range kids {
				out = append(out, namedPID{"plugin " + pluginName(cmd), pid})
			}
		}
		return out
	}
	s.alive = func() bool {
		for _, srv := range c.Servers {
			if srv.Proc.ExitedErr() != nil {
				return false
			}
		}
		return true
	}
	dyn, err := dynamic.NewForConfig(s.bench)
	if err != nil {
		c.Stop()
		return nil, err
	}
	s.pluginRestarts = func(ctx context.Context) (int, error) { return pluginRestarts(ctx, dyn) }
	s.settled = func(ctx context.Context) (bool, string) { return pluginsRunning(ctx, dyn) }
	return s, nil
}

// pluginsRunning says whether every Plugin object reports state running:
// the leader has launched them all, so the load does not measure their
// start (RBAC set-up, first lists).
func pluginsRunning(ctx context.Context, dyn dynamic.Interface) (bool, string) {
	list, err := dyn.Resource(pluginGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	running := 0
	for _, p := range list.Items {
		if st, _, _ := unstructured.NestedString(p.Object, "status", "state"); st == "running" {
			running++
		}
	}
	return len(list.Items) > 0 && running == len(list.Items), fmt.Sprintf("%d of %d plugins running", running, len(list.Items))
}

// benchConfig is the load's client: high limits, protobuf, and no
// printed API warnings.
func benchConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	configmapload.Tune(c, "scalebench")
	c.WarningHandler = rest.NoWarnings{}
	return c
}

// pluginName is NAME from a plugin's command line: `keelson plugin NAME
// ...` or `.../keelson-plugins NAME ...` (the built-ins' binary).
func pluginName(cmdline string) string {
	f := strings.Fields(cmdline)
	for i, a := range f {
		if (a == "plugin" || strings.HasSuffix(a, "/keelson-plugins")) && i+1 < len(f) {
			return f[i+1]
		}
	}
	return cmdline
}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// pluginRestarts sums status.restarts over every Plugin object.
func pluginRestarts(ctx context.Context, dyn dynamic.Interface) (int, error) {
	list, err := dyn.Resource(pluginGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list plugins: %w", err)
	}
	n := 0
	for _, p := range list.Items {
		r, _, _ := unstructured.NestedInt64(p.Object, "status", "restarts")
		n += int(r)
	}
	return n, nil
}

// startUpstream starts etcd, kube-apiserver (with keelson's flags, as
// bench/apibench does), kube-controller-manager (every default controller)
// and kube-scheduler, with their default client limits.
func startUpstream(ctx context.Context, o options) (*side, error) {
	dir, err := os.MkdirTemp(o.workDir, "scalebench-upstream-")
	if err != nil {
		return nil, fmt.Errorf("temp dir under %s: %w", o.workDir, err)
	}
	s := &side{label: "upstream (etcd + kube-apiserver + kcm + kube-scheduler)", dir: dir}
	var procs []*testproc.Process
	s.stop = func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop(hacluster.StopTimeout)
		}
		_ = os.RemoveAll(dir)
	}
	start := func(name, bin string, args ...string) (*testproc.Process, error) {
		p, err := testproc.Start(testproc.Spec{Name: name, Bin: bin, Args: args, LogPath: filepath.Join(dir, name+".log"), ProcessGroup: true})
		if err == nil {
			procs = append(procs, p)
		}
		return p, err
	}
	if err := s.startUpstream(ctx, o, start); err != nil {
		s.stop()
		return nil, err
	}
	s.procs = func() []namedPID {
		out := make([]namedPID, len(procs))
		for i, p := range procs {
			out[i] = namedPID{p.Spec.Name, p.PID()}
		}
		return out
	}
	s.alive = func() bool {
		for _, p := range procs {
			if p.ExitedErr() != nil {
				return false
			}
		}
		return true
	}
	return s, nil
}

type startFunc func(name, bin string, args ...string) (*testproc.Process, error)

func (s *side) startUpstream(ctx context.Context, o options, start startFunc) error {
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return err
	}
	bundle, err := pki.Ensure(filepath.Join(s.dir, "pki"), pki.Options{
		ServiceCIDR: config.DefaultServer().APIServer.ServiceCIDR,
		IPs:         []net.IP{net.IPv4(127, 0, 0, 1)},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return fmt.Errorf("certificates for upstream: %w", err)
	}
	s.kubeconfig = filepath.Join(s.dir, "admin.kubeconfig")
	if _, err := pki.WriteKubeconfig(s.kubeconfig, "https://"+loopback.HostPort(ports[2]), bundle.CA.CertFile, bundle.Admin); err != nil {
		return fmt.Errorf("admin kubeconfig for upstream: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		return err
	}
	s.apiservers = []*rest.Config{cfg}
	s.bench = benchConfig(cfg)

	s.etcdURL = "http://" + loopback.HostPort(ports[0])
	peer := "http://" + loopback.HostPort(ports[1])
	etcd, err := start("etcd", o.etcdBin, "--name", "default", "--data-dir", filepath.Join(s.dir, "etcd"),
		"--listen-client-urls", s.etcdURL, "--advertise-client-urls", s.etcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, etcd, "etcd /health", func(ctx context.Context) error {
		_, err := httpGet(ctx, s.etcdURL+"/health")
		return err
	}); err != nil {
		return err
	}
	kcfg := apiserver.Config{DataDir: s.dir, BindAddress: "127.0.0.1", SecurePort: ports[2],
		EtcdServers: []string{s.etcdURL}, Bundle: bundle, PodSecurity: apiserver.DefaultPodSecurity()}
	if err := kcfg.WriteAdmissionConfig(); err != nil {
		return err
	}
	kas, err := start("kube-apiserver", o.apiserverBin, kcfg.Args()...)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, kas, "kube-apiserver /readyz", func(ctx context.Context) error { return readyz(ctx, cfg) }); err != nil {
		return err
	}
	if _, err := start("kube-controller-manager", o.kcmBin, "--kubeconfig", s.kubeconfig, "--leader-elect=false",
		"--use-service-account-credentials=false", "--secure-port=0",
		"--service-account-private-key-file", bundle.ServiceAccountKey, "--root-ca-file", bundle.CA.CertFile); err != nil {
		return err
	}
	_, err = start("kube-scheduler", o.schedulerBin, "--kubeconfig", s.kubeconfig, "--leader-elect=false", "--secure-port=0")
	return err
}

// waitFor polls probe until it passes, p exits or readyTimeout passes.
func waitFor(ctx context.Context, p *testproc.Process, what string, probe func(context.Context) error) error {
	return p.WaitReady(ctx, readyTimeout, 100*time.Millisecond, func(ctx context.Context) error {
		pctx, cancel := context.WithTimeout(ctx, hacluster.ProbeTimeout)
		defer cancel()
		if err := probe(pctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

func readyz(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || strings.TrimSpace(string(body)) != "ok" {
		return fmt.Errorf("/readyz: %v %s", err, body)
	}
	return nil
}

var plainHTTP = &http.Client{Transport: &http.Transport{Proxy: nil}}

func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := plainHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}
