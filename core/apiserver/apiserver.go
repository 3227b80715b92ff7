// Package apiserver runs the upstream kube-apiserver in-process, configured from
// a Config and pointed at Keelson's etcd v3 API.
//
// kube-apiserver keeps process-global state (the component and feature-gate
// registry, Prometheus metrics, klog), so Run can be called once per process; a
// second call returns ErrAlreadyRan instead of panicking deep inside upstream code.
package apiserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/transport"
	"k8s.io/component-base/featuregate"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	basecompatibility "k8s.io/component-base/compatibility"
	utilversion "k8s.io/component-base/version"
)

// ErrAlreadyRan is returned by a second Run in the same process.
var ErrAlreadyRan = errors.New("apiserver: kube-apiserver already ran in this process; it keeps process-global state and cannot run twice")

// started guards the upstream process-global state described in the package
// comment. It is the one piece of package state, and it exists because upstream's
// own globals make a second run impossible.
var started atomic.Bool

// Run runs kube-apiserver until ctx is done, then shuts it down gracefully and
// returns nil; it returns an error if the server cannot start or fails. ready,
// if not nil, is called once, from another goroutine, when /readyz first answers
// ok, with the time since Run was called.
func Run(ctx context.Context, cfg Config, ready func(elapsed time.Duration)) error {
	start := time.Now()
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if !started.CompareAndSwap(false, true) {
		return ErrAlreadyRan
	}
	log := cfg.Logger
	// klog is routed into slog instead of applying upstream's logging options,
	// because those would also replace slog's default logger with a klog bridge
	// and so loop the process's own logs through klog.
	klog.SetSlogLogger(log.With("component", "kube-apiserver"))

	if cfg.Identity != "" {
		// The hook upstream's tests use is the only way to name the
		// identity; its config reads the name when it is built (below).
		genericapiserver.SetHostnameFuncForTests(cfg.Identity)
	}
	if cfg.ownsAdmissionConfig() {
		if err := cfg.WriteAdmissionConfig(); err != nil {
			return err
		}
	}
	completed, err := completedOptions(ctx, cfg)
	if err != nil {
		return err
	}
	probe, err := newReadyProbe(cfg)
	if err != nil {
		return err
	}
	log.Info("starting kube-apiserver", "version", utilversion.Get().GitVersion,
		"address", cfg.BindAddress+":"+strconv.Itoa(cfg.SecurePort), "etcd", cfg.EtcdServers)

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		elapsed, ok := probe.wait(runCtx, start)
		if !ok {
			return
		}
		log.Info("apiserver ready", "elapsed", elapsed.Round(time.Millisecond), "url", probe.url)
		if ready != nil {
			ready(elapsed)
		}
	})
	err = runServerChain(runCtx, completed, cfg.CurrentTerm != nil)
	cancel()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("apiserver: kube-apiserver: %w", err)
	}
	return nil
}

// runServerChain is kube-apiserver's app.Run with one change: with fenced
// set, the handler of the aggregator (the outermost server, whose filters
// authenticate every request) passes a plugin's raft term on to the store
// (withFenceTerm).
func runServerChain(ctx context.Context, opts options.CompletedOptions, fenced bool) error {
	if opts.InformerName == nil {
		name, err := cache.NewInformerName("kube-apiserver")
		if err != nil {
			return err
		}
		opts.InformerName = name
	}
	config, err := app.NewConfig(opts)
	if err != nil {
		return err
	}
	if fenced {
		generic := &config.Aggregator.GenericConfig.Config
		build := generic.BuildHandlerChainFunc
		generic.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
			return build(withFenceTerm(h), c)
		}
	}
	completed, err := config.Complete()
	if err != nil {
		return err
	}
	server, err := app.CreateServerChain(completed)
	if err != nil {
		return err
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return err
	}
	return prepared.Run(ctx)
}

// completedOptions parses cfg's flags into kube-apiserver's options, applies
// the process-wide settings they carry (klog verbosity, feature gates,
// warning handler, certificate reload) and completes and validates them.
func completedOptions(ctx context.Context, cfg Config) (options.CompletedOptions, error) {
	args := cfg.args()
	opts := options.NewServerRunOptions()
	if cfg.CurrentTerm != nil {
		adm := opts.Admission.GenericAdmission
		newTermFence(cfg.CurrentTerm).register(adm.Plugins, &adm.RecommendedPluginOrder)
	}
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range opts.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return options.CompletedOptions{}, fmt.Errorf("apiserver: kube-apiserver flags %v: %w", args, err)
	}
	if err := setKlogVerbosity(int(opts.Logs.Verbosity)); err != nil {
		return options.CompletedOptions{}, err
	}
	registry := opts.GenericServerRunOptions.ComponentGlobalsRegistry
	if err := registry.Set(); err != nil {
		return options.CompletedOptions{}, fmt.Errorf("apiserver: apply feature gates and emulation version: %w", err)
	}
	// As upstream does: the server's own loopback clients would otherwise log
	// warnings about the deprecated APIs it serves. Clients that want warnings
	// set rest.Config.WarningHandler, which takes precedence.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	if cfg.CertReloadInterval > 0 && cfg.CertReloadInterval < transport.CertCallbackRefreshDuration {
		transport.CertCallbackRefreshDuration = cfg.CertReloadInterval
	}

	completed, err := opts.Complete(ctx)
	if err != nil {
		return completed, fmt.Errorf("apiserver: complete options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return completed, fmt.Errorf("apiserver: validate options: %w", utilerrors.NewAggregate(errs))
	}
	if fg, ok := registry.FeatureGateFor(basecompatibility.DefaultKubeComponent).(featuregate.MutableFeatureGate); ok {
		fg.AddMetrics()
	}
	registry.AddMetrics()

	return completed, nil
}

// setKlogVerbosity applies --v from ExtraArgs to klog, which gates V(n) logs
// before they reach slog.
func setKlogVerbosity(v int) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	if err := fs.Set("v", strconv.Itoa(v)); err != nil {
		return fmt.Errorf("apiserver: klog verbosity %d: %w", v, err)
	}
	return nil
}
