package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/upstreamstack"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/testproc"
)

// sample is one process's memory at one moment.
type sample struct {
	pss int64 // KiB
	mem procstat.Memory
}

// phase is a side's processes measured at one moment, by name.
type phase struct {
	procs map[string]sample
	load  string // 1-minute load average when measured
}

// side is one side's figures: idle, then loaded with the workload.
type side struct {
	label        string
	idle, loaded phase
}

// running is a started side.
type running struct {
	label string
	rest  *rest.Config // the admin
	// pids names the processes to measure, now.
	pids func() (map[string]int, error)
	// started says whether the side's controllers have all started, with
	// a progress line; nil where there is nothing to ask.
	started func(ctx context.Context) (bool, string)
	stop    func()
}

// startedTimeout bounds the wait for a side's controllers to start.
const startedTimeout = 5 * time.Minute

// measure runs one side: starts it, measures it idle, creates the
// workload, waits for every pod, and measures it loaded.
func measure(ctx context.Context, o options, w workload, m mode) (side, error) {
	r, err := start(ctx, o, m)
	if err != nil {
		return side{}, err
	}
	defer r.stop()
	s := side{label: r.label}
	// The workload's bare pods draw the restricted Pod Security warning on
	// every create, which would bury the bench's own lines.
	cfg := rest.CopyConfig(r.rest)
	cfg.WarningHandler = rest.NoWarnings{}
	cfg.QPS, cfg.Burst = 5000, 5000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return s, err
	}
	t0 := time.Now()
	if err := waitStarted(ctx, cs, r); err != nil {
		return s, fmt.Errorf("%s: %w", s.label, err)
	}
	fmt.Printf("%s: controllers started after %s; settling %s\n", s.label, time.Since(t0).Round(time.Second), o.settle)
	time.Sleep(o.settle)
	if s.idle, err = takePhase(r); err != nil {
		return s, fmt.Errorf("%s idle: %w", s.label, err)
	}
	t0 = time.Now()
	if err := w.create(ctx, cs); err != nil {
		return s, err
	}
	if err := w.waitPods(ctx, cs, 15*time.Minute); err != nil {
		return s, fmt.Errorf("%s: %w", s.label, err)
	}
	fmt.Printf("%s: %d pods exist after %s; settling %s\n", s.label, w.pods(), time.Since(t0).Round(time.Second), o.settle)
	time.Sleep(o.settle)
	if s.loaded, err = takePhase(r); err != nil {
		return s, fmt.Errorf("%s loaded: %w", s.label, err)
	}
	return s, nil
}

// waitStarted waits until the ServiceAccount controller has made the
// default namespace's ServiceAccount (both sides have that controller:
// its first sync means the controller process is up and has listed) and,
// on keelson, until every Plugin reports running.
func waitStarted(ctx context.Context, cs kubernetes.Interface, r running) error {
	deadline := time.Now().Add(startedTimeout)
	progress := ""
	for time.Now().Before(deadline) {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			progress = "no ServiceAccount default/default yet"
		case err != nil:
			progress = err.Error()
		case r.started == nil:
			return nil
		default:
			var ok bool
			if ok, progress = r.started(ctx); ok {
				return nil
			}
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("controllers not started after %s: %s", startedTimeout, progress)
}

// takePhase measures every process of r now.
func takePhase(r running) (phase, error) {
	pids, err := r.pids()
	if err != nil {
		return phase{}, err
	}
	p := phase{procs: map[string]sample{}, load: procstat.LoadAvg()}
	for name, pid := range pids {
		m, err := procstat.ReadMemory(pid)
		if err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
		pss, err := procstat.ReadPSS(pid)
		if err != nil {
			return p, fmt.Errorf("%s: %w", name, err)
		}
		p.procs[name] = sample{pss: pss, mem: m}
	}
	return p, nil
}

// start starts side m of o.scope.
func start(ctx context.Context, o options, m mode) (running, error) {
	switch {
	case m != modeUpstream:
		return startKeelson(ctx, o, m)
	case o.scope == scopeControlPlane:
		return startUpstream(ctx, o)
	default:
		return startKCMSide(ctx, o)
	}
}

// serverProcess names the keelson server in the control-plane scope.
const serverProcess = "keelson server"

// startKeelson runs a keelson server with every built-in plugin, each in
// its process or (modeShared) kcm's counterparts in one group.
func startKeelson(ctx context.Context, o options, m mode) (running, error) {
	args := append([]string{}, o.keelsonArgs...)
	label := "keelson plugins"
	if o.scope == scopeControlPlane {
		label = "keelson isolated"
	}
	if m == modeShared {
		args = append(args, "--plugin-group", sharedGroupFlag())
		label = "keelson shared"
	}
	srv, err := keelsonproc.Start(ctx, o.keelsonBin, o.workDir, 3*time.Minute, args...)
	if err != nil {
		return running{}, err
	}
	dyn, err := dynamic.NewForConfig(srv.REST)
	if err != nil {
		srv.Stop()
		return running{}, err
	}
	return running{label: label, rest: srv.REST, stop: srv.Stop,
		started: func(ctx context.Context) (bool, string) { return keelsonproc.PluginsRunning(ctx, dyn) },
		pids: func() (map[string]int, error) {
			children, err := procstat.Children(srv.Proc.PID())
			if err != nil {
				return nil, err
			}
			if o.scope == scopeControllers {
				return pluginPIDs(children, o.withKeelsonOnly)
			}
			pids, err := everyChild(children)
			if err != nil {
				return nil, err
			}
			pids[serverProcess] = srv.Proc.PID()
			return pids, nil
		}}, nil
}

// startKCMSide runs kube-controller-manager against a keelson server
// without plugins (the controllers scope's upstream side).
func startKCMSide(ctx context.Context, o options) (running, error) {
	if err := binExists(o.kcmBin); err != nil {
		return running{}, err
	}
	srv, err := keelsonproc.Start(ctx, o.keelsonBin, o.workDir, 3*time.Minute, "--disable-plugin", "*")
	if err != nil {
		return running{}, err
	}
	pkiDir := filepath.Join(srv.DataDir, "pki")
	caCert := filepath.Join(pkiDir, "ca.crt")
	args := append(upstreamstack.KCMArgs(srv.Kubeconfig, filepath.Join(pkiDir, "sa.key"), caCert),
		kcmArgs(caCert, filepath.Join(pkiDir, "ca.key"))...)
	kcm, err := testproc.Start(testproc.Spec{Name: "kube-controller-manager", Bin: o.kcmBin, Args: args,
		LogPath: filepath.Join(srv.Dir, "kcm.log"), ProcessGroup: true})
	if err != nil {
		srv.Stop()
		return running{}, err
	}
	return running{label: "kube-controller-manager", rest: srv.REST,
		stop: func() { kcm.Stop(20 * time.Second); srv.Stop() },
		pids: func() (map[string]int, error) { return map[string]int{"kube-controller-manager": kcm.PID()}, nil }}, nil
}

// startUpstream runs etcd, kube-apiserver, kube-controller-manager with
// the same controllers and flags as the controllers scope, and
// kube-scheduler (the control-plane scope's upstream side).
func startUpstream(ctx context.Context, o options) (running, error) {
	for _, bin := range []string{o.etcdBin, o.apiserverBin, o.kcmBin, o.schedulerBin} {
		if err := binExists(bin); err != nil {
			return running{}, err
		}
	}
	st, err := upstreamstack.Start(ctx, upstreamstack.Spec{EtcdBin: o.etcdBin, APIServerBin: o.apiserverBin,
		KCMBin: o.kcmBin, SchedulerBin: o.schedulerBin, WorkDir: o.workDir, Prefix: "ctrlmembench-upstream-",
		KCMArgs: func(b *pki.Bundle) []string { return kcmArgs(b.CA.CertFile, b.CA.KeyFile) }})
	if err != nil {
		return running{}, err
	}
	return running{label: "upstream", rest: st.REST, stop: st.Stop,
		pids: func() (map[string]int, error) {
			pids := map[string]int{}
			for _, p := range st.Procs {
				if p.ExitedErr() != nil {
					return nil, fmt.Errorf("%s exited: %w (log in %s)", p.Spec.Name, p.ExitedErr(), p.Spec.LogPath)
				}
				pids[p.Spec.Name] = p.PID()
			}
			return pids, nil
		}}, nil
}

func binExists(bin string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (scripts/bench-controllers.sh builds it)", bin, err)
	}
	return nil
}

// kcmArgs are kube-controller-manager's flags beyond upstreamstack.KCMArgs:
// the controllers keelson has as plugins, the CSR signer on the cluster CA
// (upstream's usual setup; keelson's csrsigning plugin has its own signer
// CA: the same work), node CIDRs as keelson allocates them, and the
// plugins' client limits.
func kcmArgs(caCert, caKey string) []string {
	return []string{"--controllers", strings.Join(kcmControllers(), ","),
		"--cluster-signing-cert-file", caCert, "--cluster-signing-key-file", caKey,
		"--allocate-node-cidrs", "--cluster-cidr", "10.42.0.0/16",
		"--kube-api-qps", "50", "--kube-api-burst", "100"}
}
