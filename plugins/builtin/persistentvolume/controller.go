package persistentvolume

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/component-helpers/storage/ephemeral"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

// The event sources upstream's controllers write as.
const (
	component          = "persistentvolume-controller"
	ephemeralComponent = "ephemeral_volume"
)

// byClaim indexes pods by the "namespace/name" of every claim they use
// (named, or the claim of an ephemeral volume).
const byClaim = "claim"

// controller runs the binder, the three protection controllers (claims,
// volumes, VolumeAttributesClasses) and the ephemeral volume controller
// over one set of caches.
type controller struct {
	client  kubernetes.Interface
	claims  cache.Indexer
	volumes cache.Indexer
	pods    cache.Indexer
	vacs    cache.Indexer
	classes storagelisters.StorageClassLister
	logger  *slog.Logger
	clock   clock.WithTicker

	// Written objects the informers have not shown yet.
	newClaims  *overlay[*v1.PersistentVolumeClaim]
	newVolumes *overlay[*v1.PersistentVolume]

	claimQueue, volumeQueue       workqueue.TypedRateLimitingInterface[string]
	claimProtection, volumeProtec workqueue.TypedRateLimitingInterface[string]
	ephemeralQueue                workqueue.TypedRateLimitingInterface[string]
	vacProtection                 workqueue.TypedRateLimitingInterface[string]

	// events and ephemeralEvents are set before the workers start.
	events, ephemeralEvents record.EventRecorder
}

// newController registers the informers on f and the event handlers.
func newController(client kubernetes.Interface, f informers.SharedInformerFactory, logger *slog.Logger, clk clock.WithTicker) (*controller, error) {
	claimInf := f.Core().V1().PersistentVolumeClaims().Informer()
	volumeInf := f.Core().V1().PersistentVolumes().Informer()
	podInf := f.Core().V1().Pods().Informer()
	classes := f.Storage().V1().StorageClasses()
	vacInf := f.Storage().V1().VolumeAttributesClasses().Informer()
	if err := volumeInf.AddIndexers(cache.Indexers{byAccessModes: indexAccessModes, byVAC: indexVACs}); err != nil {
		return nil, fmt.Errorf("indexing volumes: %w", err)
	}
	if err := claimInf.AddIndexers(cache.Indexers{byVAC: indexVACs}); err != nil {
		return nil, fmt.Errorf("indexing claims: %w", err)
	}
	if err := podInf.AddIndexers(cache.Indexers{byClaim: indexPodClaims}); err != nil {
		return nil, fmt.Errorf("indexing pods by claim: %w", err)
	}
	c := &controller{
		client: client, claims: claimInf.GetIndexer(), volumes: volumeInf.GetIndexer(), pods: podInf.GetIndexer(), vacs: vacInf.GetIndexer(),
		classes: classes.Lister(), logger: logger, clock: clk,
		newClaims: newOverlay[*v1.PersistentVolumeClaim](), newVolumes: newOverlay[*v1.PersistentVolume](),
		claimQueue:      sdk.NewQueue[string]("persistentvolume-claims"),
		volumeQueue:     sdk.NewQueue[string]("persistentvolume-volumes"),
		claimProtection: sdk.NewQueue[string]("pvc-protection"),
		volumeProtec:    sdk.NewQueue[string]("pv-protection"),
		ephemeralQueue:  sdk.NewQueue[string]("ephemeral-volume"),
		vacProtection:   sdk.NewQueue[string]("vac-protection"),
	}
	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"persistentvolumeclaims", claimInf, c.claimHandlers()},
		{"persistentvolumes", volumeInf, c.volumeHandlers()},
		{"pods", podInf, c.podHandlers()},
		// Classes are read through the lister; a class created after its
		// claims is found by the next resync, as upstream.
		{"storageclasses", classes.Informer(), cache.ResourceEventHandlerFuncs{}},
		{"volumeattributesclasses", vacInf, c.vacHandlers()},
		{"persistentvolumeclaims", claimInf, c.vacWatchers()},
		{"persistentvolumes", volumeInf, c.vacWatchers()},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("watching %s: %w", h.what, err)
		}
	}
	return c, nil
}

// indexPodClaims lists the claims a pod uses.
func indexPodClaims(obj any) ([]string, error) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	var keys []string
	for i := range pod.Spec.Volumes {
		if name := claimName(pod, &pod.Spec.Volumes[i]); name != "" {
			keys = append(keys, pod.Namespace+"/"+name)
		}
	}
	return keys, nil
}

// claimName is the claim a pod's volume uses, "" for other volumes.
func claimName(pod *v1.Pod, vol *v1.Volume) string {
	switch {
	case vol.PersistentVolumeClaim != nil:
		return vol.PersistentVolumeClaim.ClaimName
	case vol.Ephemeral != nil:
		return ephemeral.VolumeClaimName(pod, vol)
	}
	return ""
}

func (c *controller) claimHandlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.claimChanged(obj) },
		UpdateFunc: func(_, obj any) { c.claimChanged(obj) },
		DeleteFunc: func(obj any) {
			claim, ok := tombstone.Object[*v1.PersistentVolumeClaim](obj)
			if !ok {
				return
			}
			key := claimKey(claim)
			c.newClaims.forget(key)
			// The volume is released now, not at the next resync.
			if claim.Spec.VolumeName != "" {
				c.volumeQueue.Add(claim.Spec.VolumeName)
			}
			// An ephemeral volume's claim deleted under its pod is made again.
			c.enqueuePodsOf(key, c.ephemeralQueue)
		},
	}
}

func (c *controller) claimChanged(obj any) {
	claim, ok := obj.(*v1.PersistentVolumeClaim)
	if !ok {
		return
	}
	key := claimKey(claim)
	c.newClaims.seen(key, claim)
	c.claimQueue.Add(key)
	c.claimProtection.Add(key)
}

func (c *controller) volumeHandlers() cache.ResourceEventHandlerFuncs {
	changed := func(obj any) {
		pv, ok := obj.(*v1.PersistentVolume)
		if !ok {
			return
		}
		c.newVolumes.seen(pv.Name, pv)
		c.volumeQueue.Add(pv.Name)
		c.volumeProtec.Add(pv.Name)
		// A claim that names this volume, or that it is pre-bound to, need
		// not wait for the resync.
		if ref := pv.Spec.ClaimRef; ref != nil {
			c.claimQueue.Add(ref.Namespace + "/" + ref.Name)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: func(obj any) {
			pv, ok := tombstone.Object[*v1.PersistentVolume](obj)
			if !ok {
				return
			}
			c.newVolumes.forget(pv.Name)
			if ref := pv.Spec.ClaimRef; ref != nil {
				c.claimQueue.Add(ref.Namespace + "/" + ref.Name)
			}
		},
	}
}

func (c *controller) podHandlers() cache.ResourceEventHandlerFuncs {
	changed := func(old, cur *v1.Pod) {
		c.enqueueClaimsOf(cur)
		if cur.DeletionTimestamp == nil {
			c.enqueueEphemeral(cur)
		}
		// An update may hide a pod deleted and re-created under its name:
		// the old pod's claims may be free now.
		if old != nil && old.UID != cur.UID {
			c.enqueueClaimsOf(old)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if p, ok := obj.(*v1.Pod); ok {
				changed(nil, p)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, _ := oldObj.(*v1.Pod)
			if p, ok := obj.(*v1.Pod); ok {
				changed(old, p)
			}
		},
		DeleteFunc: func(obj any) {
			if p, ok := tombstone.Object[*v1.Pod](obj); ok {
				c.enqueueClaimsOf(p)
			}
		},
	}
}

// enqueueClaimsOf queues the claims a pod uses for the protection
// controller (a claim waiting to be deleted may be free now; the Unused
// condition may change) and, when the pod waits to be scheduled, for the
// binder (its events name the pod).
func (c *controller) enqueueClaimsOf(pod *v1.Pod) {
	for i := range pod.Spec.Volumes {
		if name := claimName(pod, &pod.Spec.Volumes[i]); name != "" {
			key := pod.Namespace + "/" + name
			c.claimProtection.Add(key)
			if pod.Spec.NodeName == "" {
				c.claimQueue.Add(key)
			}
		}
	}
}

func (c *controller) enqueueEphemeral(pod *v1.Pod) {
	for _, vol := range pod.Spec.Volumes {
		if vol.Ephemeral != nil {
			c.ephemeralQueue.Add(pod.Namespace + "/" + pod.Name)
			return
		}
	}
}

// enqueuePodsOf queues the pods that use the claim key.
func (c *controller) enqueuePodsOf(key string, q workqueue.TypedInterface[string]) {
	objs, _ := c.pods.ByIndex(byClaim, key)
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok && p.DeletionTimestamp == nil {
			q.Add(p.Namespace + "/" + p.Name)
		}
	}
}

// run works until ctx is cancelled.
func (c *controller) run(ctx context.Context, workers int, resync time.Duration) {
	var wg sync.WaitGroup
	wg.Go(func() { sdk.RunWorkers(ctx, c.claimQueue, workers, c.syncClaimKey, c.logger) })
	wg.Go(func() { sdk.RunWorkers(ctx, c.volumeQueue, workers, c.syncVolumeKey, c.logger) })
	wg.Go(func() { sdk.RunWorkers(ctx, c.claimProtection, workers, c.syncClaimProtection, c.logger) })
	wg.Go(func() { sdk.RunWorkers(ctx, c.volumeProtec, workers, c.syncVolumeProtection, c.logger) })
	wg.Go(func() { sdk.RunWorkers(ctx, c.ephemeralQueue, workers, c.syncEphemeral, c.logger) })
	wg.Go(func() { sdk.RunWorkers(ctx, c.vacProtection, workers, c.syncVACProtection, c.logger) })
	wg.Go(func() { c.resyncLoop(ctx, resync) })
	wg.Wait()
}

// resyncLoop queues every claim and volume every period, as upstream's
// binder does: what no event announces (a class created after its claim)
// is found within a period.
func (c *controller) resyncLoop(ctx context.Context, period time.Duration) {
	t := c.clock.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			for _, key := range c.claims.ListKeys() {
				c.claimQueue.Add(key)
			}
			for _, key := range c.volumes.ListKeys() {
				c.volumeQueue.Add(key)
			}
		}
	}
}

func claimKey(claim *v1.PersistentVolumeClaim) string { return claim.Namespace + "/" + claim.Name }

// claim returns the freshest known copy of the claim key.
func (c *controller) claim(key string) (*v1.PersistentVolumeClaim, bool) {
	obj, ok, err := c.claims.GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	claim, ok := obj.(*v1.PersistentVolumeClaim)
	if !ok {
		return nil, false
	}
	return c.newClaims.pick(key, claim), true
}

// volume returns the freshest known copy of the volume name.
func (c *controller) volume(name string) (*v1.PersistentVolume, bool) {
	obj, ok, err := c.volumes.GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	pv, ok := obj.(*v1.PersistentVolume)
	if !ok {
		return nil, false
	}
	return c.newVolumes.pick(name, pv), true
}

func (c *controller) fresherVolume(pv *v1.PersistentVolume) *v1.PersistentVolume {
	return c.newVolumes.pick(pv.Name, pv)
}
