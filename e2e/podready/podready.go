// Package podready plays the kubelet's part in pod status for pods that no
// node runs (there are no nodes yet in controller tests and benchmarks): it
// marks pods Running with Ready and ContainersReady True, as upstream's
// integration tests do, so controllers see them become available.
package podready

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// IsReady reports whether p's Ready condition is True.
func IsReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// MarkReady patches the pod namespace/name's status to Running and Ready
// since now.
func MarkReady(ctx context.Context, client kubernetes.Interface, namespace, name string) error {
	now := metav1.Now()
	cond := func(t v1.PodConditionType) v1.PodCondition {
		return v1.PodCondition{Type: t, Status: v1.ConditionTrue, LastTransitionTime: now}
	}
	patch, err := json.Marshal(map[string]any{"status": v1.PodStatus{
		Phase:      v1.PodRunning,
		Conditions: []v1.PodCondition{cond(v1.PodReady), cond(v1.ContainersReady)},
		StartTime:  &now,
	}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Pods(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("marking pod %s/%s ready: %w", namespace, name, err)
	}
	return nil
}

// MarkSucceeded patches the pod namespace/name's status to Succeeded, its
// containers terminated with exit code 0 now, as a kubelet reports a pod
// that ran to completion.
func MarkSucceeded(ctx context.Context, client kubernetes.Interface, p *v1.Pod) error {
	now := metav1.Now()
	st := v1.PodStatus{Phase: v1.PodSucceeded, StartTime: &now}
	for _, c := range p.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, v1.ContainerStatus{Name: c.Name, Image: c.Image,
			State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now}}})
	}
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("marking pod %s/%s succeeded: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// Driver marks every pod of a namespace ready shortly after it appears
// (or, with Complete, succeeded), unless Hold says otherwise.
type Driver struct {
	// Hold, when set, leaves the pods it returns true for as they are.
	Hold func(*v1.Pod) bool
	// Complete marks pods Succeeded instead of Running and Ready: the
	// pods of Jobs.
	Complete bool
	// Workers is how many status patches are in flight (default 8).
	Workers int
}

// Running is a started Driver.
type Running struct {
	queue workqueue.TypedRateLimitingInterface[string]
	pods  cache.Indexer
}

// Recheck considers every pod again: call it after Hold changed its mind.
func (r *Running) Recheck() {
	for _, obj := range r.pods.List() {
		r.queue.Add(obj.(*v1.Pod).Name)
	}
}

// Start marks pods of namespace ready until ctx is cancelled. It returns
// once its cache has synced; failed patches are retried.
func (d Driver) Start(ctx context.Context, client kubernetes.Interface, namespace string) (*Running, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	inf := factory.Core().V1().Pods().Informer()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	consider := func(obj any) {
		if p, ok := obj.(*v1.Pod); ok && !d.done(p) {
			q.Add(p.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    consider,
		UpdateFunc: func(_, o any) { consider(o) },
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		q.ShutDown()
		factory.Shutdown()
		return nil, fmt.Errorf("pod cache of %s did not sync", namespace)
	}
	workers := d.Workers
	if workers <= 0 {
		workers = 8
	}
	for range workers {
		go d.work(ctx, client, namespace, inf.GetIndexer(), q)
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
		factory.Shutdown()
	}()
	return &Running{queue: q, pods: inf.GetIndexer()}, nil
}

func (d Driver) work(ctx context.Context, client kubernetes.Interface, namespace string, idx cache.Indexer, q workqueue.TypedRateLimitingInterface[string]) {
	for {
		name, quit := q.Get()
		if quit {
			return
		}
		obj, ok, _ := idx.GetByKey(namespace + "/" + name)
		p, _ := obj.(*v1.Pod)
		if !ok || d.done(p) {
			q.Forget(name)
			q.Done(name)
			continue
		}
		var err error
		if d.Complete {
			err = MarkSucceeded(ctx, client, p)
		} else {
			err = MarkReady(ctx, client, namespace, name)
		}
		if err != nil && ctx.Err() == nil {
			q.AddRateLimited(name)
		} else {
			q.Forget(name)
		}
		q.Done(name)
	}
}

// done reports whether p needs nothing from the driver: deleted, held, or
// already ready (succeeded, with Complete).
func (d Driver) done(p *v1.Pod) bool {
	if p.DeletionTimestamp != nil || (d.Hold != nil && d.Hold(p)) {
		return true
	}
	if d.Complete {
		return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
	}
	return IsReady(p)
}
