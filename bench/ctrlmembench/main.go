// Command ctrlmembench compares keelson's memory with upstream Kubernetes',
// idle (nothing but what a fresh cluster holds) and loaded with the same
// workload (by default 10,000 pods from 100 Deployments, with a Service per
// Deployment), for one of two scopes:
//
//   - controllers (the default): keelson's controller plugins, all
//     processes together, against upstream kube-controller-manager running
//     the same controllers, each against its own keelson server. The
//     controllers compared are every one keelson has an upstream
//     counterpart for (controllers.go); with -keelson-only (the default)
//     the built-in plugins kube-controller-manager has no counterpart for
//     (scheduler, local-path provisioner, metrics server, cloud provider,
//     ingress) are measured too and printed apart from the totals.
//   - control-plane: the whole control plane. On keelson's side the
//     `keelson server` process and every process it starts (every
//     built-in plugin); upstream etcd, kube-apiserver,
//     kube-controller-manager (the same controllers) and kube-scheduler.
//
// Each scope measures keelson with a process per plugin (the default),
// keelson in shared mode (-shared: the plugins with a
// kube-controller-manager counterpart in one group process) and upstream.
//
// Plugins are separate processes mapping the same binary, so their plain
// RSS would count the binary's shared pages once per process: the figures
// are PSS (shared pages divided among the processes sharing them) and
// RssAnon (private memory only).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	scope                                     scope
	keelsonBin, kcmBin, apiserverBin, etcdBin string
	schedulerBin, workDir                     string
	settle                                    time.Duration
	withKeelsonOnly                           bool
	keelsonArgs                               []string
}

func main() {
	var o options
	flag.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary")
	flag.StringVar(&o.kcmBin, "kcm-bin", "bin/kube-controller-manager-ref", "upstream kube-controller-manager binary")
	flag.StringVar(&o.apiserverBin, "apiserver-bin", "bin/kube-apiserver-ref", "upstream kube-apiserver binary (-scope control-plane)")
	flag.StringVar(&o.etcdBin, "etcd-bin", "bin/etcd-ref", "etcd binary (-scope control-plane)")
	flag.StringVar(&o.schedulerBin, "scheduler-bin", "bin/kube-scheduler-ref", "upstream kube-scheduler binary (-scope control-plane)")
	scopeName := flag.String("scope", string(scopeControllers), "what each side is: "+string(scopeControllers)+" (keelson's controller plugins vs kube-controller-manager, each against a keelson server) or "+string(scopeControlPlane)+" (keelson server and every plugin vs etcd + kube-apiserver + kube-controller-manager + kube-scheduler)")
	deployments := flag.Int("deployments", 100, "Deployments (each with a Service selecting its pods)")
	replicas := flag.Int("replicas", 100, "replicas per Deployment")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "wait after the controllers have started (idle figures) and after the last pod exists (loaded figures) before measuring")
	flag.StringVar(&o.workDir, "work-dir", os.TempDir(), "where temp dirs go")
	flag.BoolVar(&o.withKeelsonOnly, "keelson-only", true, "-scope controllers: also measure the built-in plugins kube-controller-manager has no counterpart for (scheduler, localpath, metricsserver, localcloud, ingress), printed apart from the totals (-scope control-plane measures every process)")
	withUpstream := flag.Bool("upstream", true, "also measure upstream (false: keelson only)")
	var keelsonArgs stringList
	flag.Var(&keelsonArgs, "keelson-arg", "extra `keelson server` argument for keelson's sides, repeatable (e.g. -keelson-arg=--plugin-gogc=*=50)")
	shared := flag.Bool("shared", true, "also measure keelson in shared mode (--plugin-group "+sharedGroup+"=every plugin with a kube-controller-manager counterpart: one process), printed beside the isolated default")
	flag.Parse()
	o.keelsonArgs = keelsonArgs
	switch scope(*scopeName) {
	case scopeControllers, scopeControlPlane:
		o.scope = scope(*scopeName)
	default:
		fmt.Fprintf(os.Stderr, "ctrlmembench: -scope %q: want %s or %s\n", *scopeName, scopeControllers, scopeControlPlane)
		os.Exit(2)
	}
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
		s, err := measure(context.Background(), o, w, m)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ctrlmembench:", err)
			os.Exit(1)
		}
		sides = append(sides, s)
	}
	report(os.Stdout, o.scope, sides, w)
}

// scope is what a side's processes are.
type scope string

const (
	scopeControllers  scope = "controllers"   // controller plugins vs kube-controller-manager
	scopeControlPlane scope = "control-plane" // everything on both sides
)

// mode is what one side runs.
type mode int

const (
	modeIsolated mode = iota // keelson's plugins, a process each (the default)
	modeShared               // keelson's plugins, kcm's counterparts in one group process
	modeUpstream             // kube-controller-manager, or the whole upstream stack
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
