// Command ctrlmembench compares the memory of keelson's controller plugins,
// all processes together, with upstream kube-controller-manager running the
// same controllers, each against its own keelson server holding the same
// workload (by default 10,000 pods from 100 Deployments, with a Service per
// Deployment). The controllers compared are every one keelson has an
// upstream counterpart for (controllers.go); with -keelson-only (the
// default) the built-in plugins kube-controller-manager has no counterpart
// for (scheduler, local-path provisioner, metrics server, cloud provider,
// ingress) are measured too and printed apart from the totals.
//
// Plugins are separate processes mapping the same binary, so their
// plain RSS would count the binary's shared pages once per process: the
// figures are PSS (shared pages divided among the processes sharing them)
// and RssAnon (private memory only).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/internal/testproc"
)

type side struct {
	label     string
	processes map[string]procstat.Memory // by name
	pss       map[string]int64           // KiB
}

func main() {
	keelsonBin := flag.String("keelson-bin", "bin/keelson", "keelson binary")
	kcmBin := flag.String("kcm-bin", "bin/kube-controller-manager-ref", "upstream kube-controller-manager binary")
	deployments := flag.Int("deployments", 100, "Deployments (each with a Service selecting its pods)")
	replicas := flag.Int("replicas", 100, "replicas per Deployment")
	settle := flag.Duration("settle", 30*time.Second, "wait after the last pod exists before measuring")
	workDir := flag.String("work-dir", os.TempDir(), "where temp dirs go")
	withKeelsonOnly := flag.Bool("keelson-only", true, "also measure the built-in plugins kube-controller-manager has no counterpart for (scheduler, localpath, metricsserver, localcloud, ingress), printed apart from the totals")
	withUpstream := flag.Bool("upstream", true, "also measure kube-controller-manager (false: keelson's plugins only)")
	var keelsonArgs stringList
	flag.Var(&keelsonArgs, "keelson-arg", "extra `keelson server` argument for the plugins' side, repeatable (e.g. -keelson-arg=--plugin-gogc=*=50)")
	shared := flag.Bool("shared", true, "also measure keelson in shared mode (--plugin-group "+sharedGroup+"=every plugin with a kube-controller-manager counterpart: one process), printed beside the isolated default")
	flag.Parse()
	w := workload{deployments: *deployments, replicas: *replicas}
	modes := []mode{modeIsolated}
	if *shared {
		modes = append(modes, modeShared)
	}
	if *withUpstream {
		modes = append(modes, modeUpstream)
	}
	var sides []side
	for _, m := range modes {
		s, err := measure(*keelsonBin, *kcmBin, *workDir, w, m, *settle, *withKeelsonOnly, keelsonArgs...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ctrlmembench:", err)
			os.Exit(1)
		}
		sides = append(sides, s)
	}
	report(sides, w)
}

// mode is what one side runs.
type mode int

const (
	modeIsolated mode = iota // keelson's plugins, a process each (the default)
	modeShared               // keelson's plugins, kcm's counterparts in one group process
	modeUpstream             // kube-controller-manager
)

// measure runs one side: keelson's plugins, or kube-controller-manager.
func measure(keelsonBin, kcmBin, workDir string, w workload, m mode, settle time.Duration, withKeelsonOnly bool, keelsonArgs ...string) (side, error) {
	ctx := context.Background()
	upstream := m == modeUpstream
	args := []string{}
	if upstream {
		args = append(args, "--disable-plugin", "*")
	} else {
		args = append(args, keelsonArgs...)
	}
	if m == modeShared {
		args = append(args, "--plugin-group", sharedGroupFlag())
	}
	srv, err := keelsonproc.Start(ctx, keelsonBin, workDir, 3*time.Minute, args...)
	if err != nil {
		return side{}, err
	}
	defer srv.Stop()
	s := side{label: "keelson plugins", processes: map[string]procstat.Memory{}, pss: map[string]int64{}}
	if m == modeShared {
		s.label = "keelson shared"
	}
	pids := map[string]int{}
	if upstream {
		s.label = "kube-controller-manager"
		kcm, err := startKCM(kcmBin, srv)
		if err != nil {
			return s, err
		}
		defer kcm.Stop(20 * time.Second)
		pids["kube-controller-manager"] = kcm.PID()
	}
	// The workload's bare pods draw the restricted Pod Security warning on
	// every create, which would bury the bench's own lines.
	cfg := rest.CopyConfig(srv.REST)
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return s, err
	}
	start := time.Now()
	if err := w.create(ctx, cs); err != nil {
		return s, err
	}
	if err := w.waitPods(ctx, cs, 15*time.Minute); err != nil {
		return s, fmt.Errorf("%s: %w", s.label, err)
	}
	fmt.Printf("%s: %d pods exist after %s; settling %s\n", s.label, w.pods(), time.Since(start).Round(time.Second), settle)
	time.Sleep(settle)
	if !upstream {
		children, err := procstat.Children(srv.Proc.PID())
		if err != nil {
			return s, err
		}
		if pids, err = pluginPIDs(children, withKeelsonOnly); err != nil {
			return s, err
		}
	}
	for name, pid := range pids {
		m, err := procstat.ReadMemory(pid)
		if err != nil {
			return s, err
		}
		pss, err := procstat.ReadPSS(pid)
		if err != nil {
			return s, err
		}
		s.processes[name], s.pss[name] = m, pss
	}
	return s, nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// startKCM runs kube-controller-manager with the controllers keelson has as
// plugins, against srv as the admin.
func startKCM(bin string, srv *keelsonproc.Server) (*testproc.Process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (scripts/bench-controllers.sh builds it)", bin, err)
	}
	pki := filepath.Join(srv.DataDir, "pki")
	args := []string{
		"--kubeconfig", srv.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--controllers", strings.Join(kcmControllers(), ","), "--use-service-account-credentials=false",
		"--service-account-private-key-file", filepath.Join(pki, "sa.key"),
		"--root-ca-file", filepath.Join(pki, "ca.crt"),
		// The CSR signer signs with the cluster CA, upstream's usual setup
		// (keelson's csrsigning plugin has its own signer CA; same work).
		"--cluster-signing-cert-file", filepath.Join(pki, "ca.crt"),
		"--cluster-signing-key-file", filepath.Join(pki, "ca.key"),
		"--allocate-node-cidrs", "--cluster-cidr", "10.42.0.0/16",
		"--kube-api-qps", "50", "--kube-api-burst", "100",
	}
	return testproc.Start(testproc.Spec{Name: "kube-controller-manager", Bin: bin, Args: args, LogPath: filepath.Join(srv.Dir, "kcm.log"), ProcessGroup: true})
}

func report(sides []side, w workload) {
	fmt.Printf("\nController memory with %d pods (%d Deployments x %d replicas, a Service each); load %s\n",
		w.pods(), w.deployments, w.replicas, procstat.LoadAvg())
	fmt.Printf("kube-controller-manager --controllers (%d): %s\n", len(kcmControllers()), strings.Join(kcmControllers(), ","))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "side\tprocess\tPSS MiB\tRssAnon MiB\tVmRSS MiB")
	for _, s := range sides {
		compared, apart := s.split()
		s.rows(tw, compared, "TOTAL")
		if len(apart) > 0 {
			s.rows(tw, apart, "keelson-only plugins, no kcm counterpart")
		}
	}
	tw.Flush()
}

// split returns the side's processes doing kube-controller-manager's work
// and the keelson-only plugins, each sorted by name.
func (s side) split() (compared, apart []string) {
	for n := range s.pss {
		if _, ok := keelsonOnly[n]; ok {
			apart = append(apart, n)
		} else {
			compared = append(compared, n)
		}
	}
	sort.Strings(compared)
	sort.Strings(apart)
	return compared, apart
}

// rows prints one line per process of names and a line labelled total
// adding them up.
func (s side) rows(tw io.Writer, names []string, total string) {
	var pss, anon, rss int64
	for _, n := range names {
		m := s.processes[n]
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\n", s.label, n, procstat.MiB(s.pss[n]), procstat.MiB(m.RssAnonKiB), procstat.MiB(m.VmRSSKiB))
		pss, anon, rss = pss+s.pss[n], anon+m.RssAnonKiB, rss+m.VmRSSKiB
	}
	fmt.Fprintf(tw, "%s\t%s (%d processes)\t%.1f\t%.1f\t%.1f\n", s.label, total, len(names), procstat.MiB(pss), procstat.MiB(anon), procstat.MiB(rss))
}
