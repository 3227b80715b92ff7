package sdk

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// DefaultLinger is how long a lazily started controller keeps its caches
// after the last object of its trigger resource is deleted, so that a
// delete followed by a create does not list everything again.
const DefaultLinger = 2 * time.Minute

// Trigger is the resource a lazily started controller serves: its informers
// (pods and whatever else its setup registers) run only while at least one
// object of the resource exists. Without any the controller has nothing to
// do, and a cluster that never uses the resource pays for a names-only
// watch of it instead of a cache of every pod.
type Trigger struct {
	// Resource is watched metadata-only; only names are kept.
	Resource schema.GroupVersionResource
	// What names the objects in status messages ("ReplicationControllers").
	What string
	// Linger is how long the caches stay after the last object is gone
	// (DefaultLinger when zero).
	Linger time.Duration
}

// LazyInformerPlugin is InformerPlugin whose setup, and every informer it
// registers, runs only while an object of trigger's resource exists: the
// first one created starts it (setup is called again with a new factory,
// its caches list and sync, then its work runs), and Linger after the last
// one is deleted its work is cancelled and its caches are dropped. While
// no object exists the plugin is Ready with a message saying it is idle.
func LazyInformerPlugin(name, version string, trigger Trigger, setup InformerSetup, opts ...informers.SharedInformerOption) Plugin {
	p := InformerPlugin(name, version, setup, opts...)
	p.Run = func(ctx context.Context, env Env) error {
		if err := checkSetup(env, setup); err != nil {
			return err
		}
		return runLazy(ctx, env, trigger, func(ctx context.Context) error {
			return runInformers(ctx, env, setup, opts)
		})
	}
	return p
}

// checkSetup runs setup once on a factory that is never started, under a
// cancelled context, so that what setup refuses (a bad configuration)
// fails the plugin at once, as it does without laziness, instead of when
// the first object appears.
func checkSetup(env Env, setup InformerSetup) error {
	client, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := setup(ctx, env, client, informers.NewSharedInformerFactory(client, 0)); err != nil {
		return fmt.Errorf("setting up informers: %w", err)
	}
	return nil
}

func runLazy(ctx context.Context, env Env, t Trigger, active func(context.Context) error) error {
	client, err := metadata.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building metadata client: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, err := watchPresence(ctx, client, t.Resource)
	if err != nil {
		return err
	}
	env.NotReady(fmt.Sprintf("waiting for the list of %s", t.What), nil)
	if !cache.WaitForCacheSync(ctx.Done(), p.inf.HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("the list of %s did not sync", t.What)
	}
	linger := t.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	g := &gate{what: t.What, linger: linger, clock: clock.RealClock{}, count: p.count, changed: p.changed,
		active: active, idle: func(msg string) { env.Ready(msg) }, logger: env.Logger}
	return g.run(ctx)
}

// presence counts the objects of one resource from a metadata-only watch
// that keeps their names only, and signals every change.
type presence struct {
	inf     cache.SharedIndexInformer
	changed chan struct{}
}

func watchPresence(ctx context.Context, client metadata.Interface, gvr schema.GroupVersionResource) (*presence, error) {
	inf := metadatainformer.NewFilteredMetadataInformer(client, gvr, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
	if err := inf.SetTransform(namesOnly); err != nil {
		return nil, fmt.Errorf("watching %s: %w", gvr.Resource, err)
	}
	p := &presence{inf: inf, changed: make(chan struct{}, 1)}
	signal := func() {
		select {
		case p.changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { signal() }, DeleteFunc: func(any) { signal() },
	}); err != nil {
		return nil, fmt.Errorf("watching %s: %w", gvr.Resource, err)
	}
	go inf.RunWithContext(ctx)
	return p, nil
}

func (p *presence) count() int { return len(p.inf.GetStore().ListKeys()) }

// namesOnly keeps what the store's key needs (and the resource version
// the reflector reads); a trigger needs no more.
func namesOnly(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}}, nil
}
