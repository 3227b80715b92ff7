// Command pluginbench measures what running a controller as a plugin
// process costs against running it in-process:
//
//   - plugin start time: from the host's Start to the plugin reporting ready
//     (process exec, go-plugin handshake with AutoMTLS, Describe, Configure,
//     and for the echo controller its informer sync), for a minimal plugin
//     and for an informer-based controller;
//   - a built-in plugin process (-builtins, default ttlafterfinished and
//     podgc): its start time and, after idling, its private memory
//     (smaps_rollup Private_Clean+Private_Dirty), anonymous memory and PSS,
//     run from the keelson binary (`keelson plugin NAME`, how built-ins ran
//     before) and from the keelson-plugins binary (how they run now), with
//     -copies processes of one binary running at once as in a cluster;
//   - reconcile round trip: from creating a ConfigMap to seeing the echo
//     controller's annotation on it through a watch, with the controller in
//     the bench process (sdk.RunLocal) and as a plugin process.
//
// It starts its own keelson server (no built-in plugins) on loopback.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/latency"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/pluginbench/echo"
	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/proto"
	"github.com/keelson/keelson/plugins/sdk"
)

func main() {
	keelsonBin := flag.String("keelson-bin", "bin/keelson", "keelson binary")
	pluginsBin := flag.String("keelson-plugins-bin", "bin/keelson-plugins", "the built-in plugins' multicall binary (make build writes it beside keelson)")
	builtins := flag.String("builtins", "ttlafterfinished,podgc", "built-in plugins whose process footprint to measure (comma-separated; empty: skip)")
	idle := flag.Duration("idle", 3*time.Second, "how long a built-in plugin idles before its memory is read")
	copies := flag.Int("copies", 8, "built-in plugin processes of one binary running at once while measured")
	starts := flag.Int("starts", 10, "plugin starts to time, per plugin")
	reconciles := flag.Int("reconciles", 300, "sequential reconcile round trips per mode")
	workDir := flag.String("work-dir", os.TempDir(), "where temp dirs go")
	configs := map[string]string{}
	flag.Func("builtin-config", "NAME=JSON: the config section a built-in plugin of -builtins gets (repeatable; e.g. metricsserver's advertiseAddress)", func(v string) error {
		name, cfg, ok := strings.Cut(v, "=")
		if !ok || name == "" || !json.Valid([]byte(cfg)) {
			return fmt.Errorf("%q: want NAME=JSON, e.g. metricsserver={\"advertiseAddress\":\"127.0.0.1\"}", v)
		}
		configs[name] = cfg
		return nil
	})
	flag.Parse()
	b := builtinOptions{launchers: builtinLaunchers(*keelsonBin, *pluginsBin), idle: *idle, copies: *copies, configs: configs}
	if *builtins != "" {
		b.names = strings.Split(*builtins, ",")
	}
	if err := run(*keelsonBin, *workDir, *starts, *reconciles, b); err != nil {
		fmt.Fprintln(os.Stderr, "pluginbench:", err)
		os.Exit(1)
	}
}

// builtinOptions says which built-in plugin processes to measure.
type builtinOptions struct {
	launchers []launcher
	names     []string
	idle      time.Duration
	copies    int
	configs   map[string]string // config sections by plugin name
}

func run(keelsonBin, workDir string, starts, reconciles int, b builtinOptions) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp(workDir, "pluginbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins := map[string]string{
		"testplugin": "github.com/keelson/keelson/plugins/internal/testplugin",
		"echoplugin": "github.com/keelson/keelson/bench/pluginbench/echoplugin",
	}
	for name, pkg := range bins {
		out := filepath.Join(dir, name)
		if b, err := exec.Command("go", "build", "-trimpath", "-o", out, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", pkg, err, b)
		}
		bins[name] = out
	}
	srv, err := keelsonproc.Start(ctx, keelsonBin, workDir, 3*time.Minute, "--disable-plugin", "*")
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Printf("pluginbench: keelson ready in %s; load %s\n\n", srv.Ready.Round(time.Millisecond), procstat.LoadAvg())

	hostCfg, err := adminHostConfig(srv)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "plugin start (Start to ready)\tn\tp50 ms\tp99 ms\tmax ms")
	for _, p := range []struct{ label, bin, config string }{
		{"minimal plugin (testplugin)", bins["testplugin"], `{"mode":"healthy"}`},
		{"informer controller (echo)", bins["echoplugin"], ""},
	} {
		lat, err := timeStarts(ctx, hostCfg, p.bin, p.config, starts)
		if err != nil {
			return err
		}
		s := latency.Summarize(lat)
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\n", p.label, len(lat), s.P50Ms, s.P99Ms, s.MaxMs)
	}
	tw.Flush()
	fmt.Println()
	if len(b.names) > 0 {
		if err := builtinFootprint(ctx, os.Stdout, hostCfg, b); err != nil {
			return err
		}
		fmt.Println()
	}

	cs, err := kubernetes.NewForConfig(srv.REST)
	if err != nil {
		return err
	}
	fmt.Fprintln(tw, "echo reconcile round trip\tn\tp50 ms\tp99 ms\tmean ms")
	for _, mode := range []string{"in-process", "plugin process"} {
		lat, err := roundTrips(ctx, cs, srv, hostCfg, bins["echoplugin"], mode == "plugin process", reconciles)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		var sum time.Duration
		for _, l := range lat {
			sum += l
		}
		s := latency.Summarize(lat)
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\n", mode, len(lat), s.P50Ms, s.P99Ms, latency.Ms(sum/time.Duration(len(lat))))
	}
	return tw.Flush()
}

// adminHostConfig is a host configuration that hands every plugin the
// admin's certificate: the bench measures the plugin boundary, not RBAC.
func adminHostConfig(srv *keelsonproc.Server) (host.Config, error) {
	pkiDir := filepath.Join(srv.DataDir, "pki")
	read := func(name string) []byte {
		b, _ := os.ReadFile(filepath.Join(pkiDir, name))
		return b
	}
	creds := proto.Credentials{ClientCertPEM: read("admin.crt"), ClientKeyPEM: read("admin.key")}
	if err := creds.Validate(); err != nil {
		return host.Config{}, fmt.Errorf("admin credentials in %s: %w", pkiDir, err)
	}
	return host.Config{
		APIEndpoint: srv.REST.Host,
		CAPEM:       read("ca.crt"),
		Logger:      slog.New(slog.DiscardHandler),
		Credentials: func(context.Context, string, uint64) (proto.Credentials, time.Time, error) {
			return creds, time.Time{}, nil
		},
	}, nil
}

// startPlugin starts bin under a new supervisor and returns when it is
// ready, with how long that took and a stop function.
func startPlugin(ctx context.Context, cfg host.Config, bin, config string) (time.Duration, func(), error) {
	sp := host.Spec{Name: "bench", Path: bin, Builtin: true}
	if config != "" {
		sp.Config = []byte(config)
	}
	d, _, stop, err := startSpec(ctx, cfg, sp)
	return d, stop, err
}

// startSpec starts sp under a new supervisor and returns when it is ready,
// with how long that took, its process id and a stop function.
func startSpec(ctx context.Context, cfg host.Config, sp host.Spec) (time.Duration, int, func(), error) {
	ready := make(chan int, 1)
	failed := make(chan string, 1)
	cfg.OnChange = func(st host.PluginStatus) {
		switch {
		case st.State == host.StateRunning && st.Ready:
			select {
			case ready <- st.PID:
			default:
			}
		case st.State == host.StateCrashLooping || st.State == host.StateRefused:
			select {
			case failed <- st.LastError:
			default:
			}
		}
	}
	sup, err := host.New(cfg, []host.Spec{sp})
	if err != nil {
		return 0, 0, nil, err
	}
	start := time.Now()
	if err := sup.Start(ctx, 1); err != nil {
		return 0, 0, nil, err
	}
	select {
	case pid := <-ready:
		return time.Since(start), pid, sup.Stop, nil
	case msg := <-failed:
		sup.Stop()
		return 0, 0, nil, fmt.Errorf("plugin %s (%s) failed: %s", sp.Name, sp.Path, msg)
	case <-time.After(time.Minute):
		sup.Stop()
		return 0, 0, nil, fmt.Errorf("plugin %s (%s) not ready within a minute", sp.Name, sp.Path)
	}
}

func timeStarts(ctx context.Context, cfg host.Config, bin, config string, n int) ([]time.Duration, error) {
	var lat []time.Duration
	for range n {
		d, stop, err := startPlugin(ctx, cfg, bin, config)
		if err != nil {
			return nil, err
		}
		stop()
		lat = append(lat, d)
	}
	return lat, nil
}

// roundTrips runs the echo controller in-process or as a plugin and times n
// sequential ConfigMap creates until its annotation is seen.
func roundTrips(ctx context.Context, cs kubernetes.Interface, srv *keelsonproc.Server, cfg host.Config, bin string, asPlugin bool, n int) ([]time.Duration, error) {
	ns := "pluginbench-inprocess"
	if asPlugin {
		ns = "pluginbench-plugin"
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if asPlugin {
		_, stop, err := startPlugin(ctx, cfg, bin, "")
		if err != nil {
			return nil, err
		}
		defer stop()
	} else {
		rctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{}, 1)
		errc := make(chan error, 1)
		go func() {
			errc <- sdk.RunLocal(rctx, echo.Plugin(), sdk.LocalOptions{RESTConfig: srv.REST, Logger: slog.New(slog.DiscardHandler),
				Status: func(ok bool, _, _ string) {
					if ok {
						select {
						case ready <- struct{}{}:
						default:
						}
					}
				}})
		}()
		defer func() { cancel(); <-errc }()
		select {
		case <-ready:
		case err := <-errc:
			return nil, err
		}
	}
	w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{LabelSelector: echo.LabelKey + "=" + echo.LabelValue})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var lat []time.Duration
	for i := range n {
		name := fmt.Sprintf("cm-%d", i)
		start := time.Now()
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: name, Labels: map[string]string{echo.LabelKey: echo.LabelValue}}}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		if err := waitAnnotated(w, name); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	return lat, nil
}

func waitAnnotated(w watch.Interface, name string) error {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("watch closed while waiting for %s", name)
			}
			if cm, isCM := ev.Object.(*corev1.ConfigMap); isCM && cm.Name == name && cm.Annotations[echo.Annotation] != "" {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("ConfigMap %s was not annotated within 30s", name)
		}
	}
}
