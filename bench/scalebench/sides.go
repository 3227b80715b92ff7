package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/hacluster"
	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/upstreamstack"
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
	args := append(clusterCIDRArgs(o.nodes, o.keelsonArgs), o.keelsonArgs...)
	c, err := hacluster.Start(ctx, log, hacluster.Spec{Label: "scale", Bin: o.keelsonBin, WorkDir: o.workDir,
		Addrs: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, APIServer: true, ExtraArgs: args}, readyTimeout)
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
	s.settled = func(ctx context.Context) (bool, string) { return keelsonproc.PluginsRunning(ctx, dyn) }
	return s, nil
}

// clusterCIDRArgs gives the servers a pod range with a /24 for each of
// nodes kwok nodes, as a cluster of that size would be configured: the
// default 10.42.0.0/16 holds 256, and the node IPAM controller logs a
// warning for every node left without one, on every leader change. None
// when nodes fit the default or extra already sets --cluster-cidr.
func clusterCIDRArgs(nodes int, extra []string) []string {
	if nodes <= 256 || slices.ContainsFunc(extra, func(a string) bool { return strings.HasPrefix(a, "--cluster-cidr") }) {
		return nil
	}
	bits := 0
	for 1<<bits < nodes {
		bits++
	}
	// 10.64.0.0/10 and narrower stay clear of the service range 10.43.0.0/16.
	return []string{"--cluster-cidr", fmt.Sprintf("10.64.0.0/%d", 24-bits)}
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

// pluginRestarts sums status.restarts over every Plugin object.
func pluginRestarts(ctx context.Context, dyn dynamic.Interface) (int, error) {
	list, err := dyn.Resource(keelsonproc.PluginGVR).List(ctx, metav1.ListOptions{})
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
	st, err := upstreamstack.Start(ctx, upstreamstack.Spec{EtcdBin: o.etcdBin, APIServerBin: o.apiserverBin,
		KCMBin: o.kcmBin, SchedulerBin: o.schedulerBin, WorkDir: o.workDir, Prefix: "scalebench-upstream-",
		ReadyTimeout: readyTimeout, ProbeTimeout: hacluster.ProbeTimeout})
	if err != nil {
		return nil, err
	}
	s := &side{label: "upstream (etcd + kube-apiserver + kcm + kube-scheduler)", dir: st.Dir,
		kubeconfig: st.Kubeconfig, etcdURL: st.EtcdURL, apiservers: []*rest.Config{st.REST},
		bench: benchConfig(st.REST), stop: st.Stop, alive: st.Alive}
	s.procs = func() []namedPID {
		out := make([]namedPID, len(st.Procs))
		for i, p := range st.Procs {
			out[i] = namedPID{p.Spec.Name, p.PID()}
		}
		return out
	}
	return s, nil
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
