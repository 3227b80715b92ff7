package sdk

import (
	"context"
	"fmt"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
)

// InformerSetup registers the informers a controller reads on factory
// (before it starts) and returns the controller's work, which runs once
// every registered cache has synced, until ctx is cancelled.
type InformerSetup func(ctx context.Context, env Env, client kubernetes.Interface,
	factory informers.SharedInformerFactory) (run func(ctx context.Context) error, err error)

// ServeInformers serves a controller built on client-go shared informers.
// Each plugin holds its own caches, so pass options that keep them small
// (informers.WithTransform to drop unused fields, WithTweakListOptions for
// label or field selectors).
func ServeInformers(name, version string, setup InformerSetup, opts ...informers.SharedInformerOption) {
	Serve(InformerPlugin(name, version, setup, opts...))
}

// InformerPlugin is the Plugin that ServeInformers serves, for authors who
// need to adjust it (e.g. its Kind) before calling Serve.
func InformerPlugin(name, version string, setup InformerSetup, opts ...informers.SharedInformerOption) Plugin {
	return Plugin{
		Name:        name,
		Kind:        KindController,
		Version:     version,
		ManualReady: true,
		Run: func(ctx context.Context, env Env) error {
			return runInformers(ctx, env, setup, opts)
		},
	}
}

func runInformers(ctx context.Context, env Env, setup InformerSetup, opts []informers.SharedInformerOption) error {
	client, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	var factory informers.SharedInformerFactory
	if env.shared != nil {
		// A member of a group process (ServeGroup): its caches are the
		// group's, read with the group's identity; its writes (client)
		// still carry its own. opts are the isolated plugin's trimming,
		// which the shared cache does not apply (sharedinformers.go).
		factory = env.shared.view(env.member)
	} else {
		factory = informers.NewSharedInformerFactoryWithOptions(client, 0, opts...)
	}
	// Shutdown waits for the informers, which stop when ctx is cancelled:
	// the deferred cancel must run first. (A member view's Shutdown only
	// removes the run's event handlers.)
	defer factory.Shutdown()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	run, err := setup(ctx, env, client, factory)
	if err != nil {
		return fmt.Errorf("setting up informers: %w", err)
	}
	env.NotReady("waiting for informer caches to sync", nil)
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	env.Ready("informer caches synced")
	return run(ctx)
}
