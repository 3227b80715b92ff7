// Package scheduler is Keelson's built-in pod scheduler: it binds the pods
// whose spec.schedulerName is "default-scheduler" (configurable) to nodes
// with upstream kube-scheduler's placement semantics (filters, scores,
// sampling of large clusters, preemption, events and conditions), and is
// built for throughput: one loop owns an incrementally maintained cluster
// model, nodes are filtered in parallel, and bindings run in the background
// while the next pods are placed against the assumed ones.
package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "scheduler"

// Plugin returns the scheduler plugin.
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Name:        Name,
		Kind:        sdk.KindScheduler,
		Version:     "0.1.0",
		ManualReady: true,
		Run:         run,
		Rules:       rules(),
	}
}

// rules are exactly the API permissions the scheduler uses.
func rules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/binding"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"nodes", "namespaces", "services", "replicationcontrollers"}, Verbs: read},
		// Volume binding: a chosen volume's claimRef, a claim's selected node.
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims", "persistentvolumes"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "statefulsets"}, Verbs: read},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: read},
		{APIGroups: []string{"policy"}, Resources: []string{"poddisruptionbudgets"}, Verbs: read},
		{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	}
}

func run(ctx context.Context, env sdk.Env) error {
	cfg, err := parseConfig(env.Config)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(clientConfig(env.RESTConfig, cfg))
	if err != nil {
		return fmt.Errorf("building the API client: %w", err)
	}
	// Events go through their own client, so that a burst of events never
	// queues behind bindings in the rate limiter, nor the other way round.
	eventClient, err := kubernetes.NewForConfig(clientConfig(env.RESTConfig, cfg))
	if err != nil {
		return fmt.Errorf("building the events client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	broadcaster := events.NewEventBroadcasterAdapterWithContext(ctx, eventClient)
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(ctx.Done())

	inf := newInformers(client)
	defer inf.shutdown()
	s := newScheduler(cfg, deps{
		client:   client,
		recorder: broadcaster.NewRecorder(cfg.schedulerName),
		listers:  inf.listers(),
		pods:     inf.pods.Lister(),
		clock:    clockwork.NewRealClock(),
		rand:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0)),
		log:      env.Logger,
	})
	if err := inf.register(s); err != nil {
		return err
	}

	env.NotReady("waiting for informer caches to sync", nil)
	inf.start(ctx)
	if !inf.waitForSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("informer caches did not sync")
	}
	env.Ready("scheduling")
	env.Logger.Info("scheduler started", "schedulerName", cfg.schedulerName,
		"percentageOfNodesToScore", cfg.engine.PercentageOfNodesToScore, "parallelism", cfg.engine.Parallelism)
	return s.Run(ctx)
}

// clientConfig copies the host's config with the scheduler's rate limits.
func clientConfig(base *rest.Config, cfg settings) *rest.Config {
	c := rest.CopyConfig(base)
	c.QPS, c.Burst = cfg.clientQPS, cfg.clientBurst
	return c
}

// informerSet holds the scheduler's informers: pods (non-terminal only) in
// their own factory because of the field selector, everything else in the
// other. Transforms keep only what the scheduler reads.
type informerSet struct {
	podFactory, factory informers.SharedInformerFactory
	pods                coreinformers.PodInformer
}

func (i *informerSet) start(ctx context.Context) {
	i.podFactory.Start(ctx.Done())
	i.factory.Start(ctx.Done())
}

func (i *informerSet) waitForSync(ctx context.Context) bool {
	for _, f := range []informers.SharedInformerFactory{i.podFactory, i.factory} {
		for _, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return false
			}
		}
	}
	return true
}

func (i *informerSet) shutdown() {
	i.podFactory.Shutdown()
	i.factory.Shutdown()
}

func (i *informerSet) listers() placement.Listers {
	core, apps := i.factory.Core().V1(), i.factory.Apps().V1()
	return placement.Listers{
		Namespaces:             core.Namespaces().Lister(),
		PVCs:                   core.PersistentVolumeClaims().Lister(),
		PVs:                    core.PersistentVolumes().Lister(),
		StorageClasses:         i.factory.Storage().V1().StorageClasses().Lister(),
		Services:               core.Services().Lister(),
		ReplicationControllers: core.ReplicationControllers().Lister(),
		ReplicaSets:            apps.ReplicaSets().Lister(),
		StatefulSets:           apps.StatefulSets().Lister(),
		PDBs:                   i.factory.Policy().V1().PodDisruptionBudgets().Lister(),
	}
}

// register attaches the scheduler's handlers; informers are created by
// asking for them, so every lister used must be requested here first.
func (i *informerSet) register(s *Scheduler) error {
	core := i.factory.Core().V1()
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{i.pods.Informer(), s.podHandlers()},
		{core.Nodes().Informer(), s.nodeHandlers()},
		{core.PersistentVolumeClaims().Informer(), s.moveHandlers(volumeFilters)},
		{core.PersistentVolumes().Informer(), s.moveHandlers(volumeFilters)},
		{i.factory.Storage().V1().StorageClasses().Informer(), s.moveHandlers(volumeFilters)},
		{core.Namespaces().Informer(), s.moveHandlers(placement.FilterSet(0).With(placement.FilterInterPodAffinity))},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return fmt.Errorf("registering an informer handler: %w", err)
		}
	}
	// Read through listers only.
	core.Services().Informer()
	core.ReplicationControllers().Informer()
	i.factory.Apps().V1().ReplicaSets().Informer()
	i.factory.Apps().V1().StatefulSets().Informer()
	i.factory.Policy().V1().PodDisruptionBudgets().Informer()
	return nil
}
