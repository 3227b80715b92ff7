package sdk

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// ManagerSetup registers an operator's controllers on mgr before it starts,
// exactly as an operator's main does (builder.ControllerManagedBy(mgr)...).
type ManagerSetup func(ctx context.Context, env Env, mgr manager.Manager) error

// ServeManager serves a controller-runtime operator as a plugin: an
// existing operator becomes a plugin by moving its controller registration
// into setup and calling this from main.
func ServeManager(p Plugin, setup ManagerSetup, opts manager.Options) {
	Serve(ManagerPlugin(p, setup, opts))
}

// ManagerPlugin returns p with a Run that builds a controller-runtime
// Manager with the plugin's identity, lets setup register controllers, and
// runs it, reporting ready once its caches synced. p.Run is replaced.
//
// The host guarantees a single running instance (on the raft leader, fenced
// by term), so leader election is off; so are the metrics and health
// listeners, which would collide between plugins on one host: health goes
// over the plugin protocol instead.
func ManagerPlugin(p Plugin, setup ManagerSetup, opts manager.Options) Plugin {
	p.ManualReady = true
	p.Run = func(ctx context.Context, env Env) error {
		o := opts
		o.LeaderElection = false
		o.Metrics = metricsserver.Options{BindAddress: "0"}
		o.HealthProbeBindAddress = "0"
		o.Logger = logr.FromSlogHandler(env.Logger.Handler())
		cfg := rest.CopyConfig(env.RESTConfig)
		// controller-runtime picks protobuf per type where it is known to
		// work and JSON elsewhere (custom resources); a forced protobuf
		// content type would break the latter.
		cfg.ContentType, cfg.AcceptContentTypes = "", ""
		mgr, err := manager.New(cfg, o)
		if err != nil {
			return fmt.Errorf("building the controller manager: %w", err)
		}
		if err := setup(ctx, env, mgr); err != nil {
			return fmt.Errorf("setting up controllers: %w", err)
		}
		env.NotReady("waiting for caches to sync", nil)
		go func() {
			if mgr.GetCache().WaitForCacheSync(ctx) {
				env.Ready("caches synced; controllers running")
			}
		}()
		return mgr.Start(ctx)
	}
	return p
}
