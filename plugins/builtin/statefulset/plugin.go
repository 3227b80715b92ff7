// Package statefulset is the built-in StatefulSet controller plugin: pods
// with stable names <set>-<ordinal> (from spec.ordinals.start), stable
// network identities (hostname and the governing service as subdomain) and
// one PersistentVolumeClaim per ordinal and volumeClaimTemplate; created
// and removed in order (OrderedReady) or all at once (Parallel); rolled to
// a new template from the highest ordinal down (RollingUpdate with
// partition and maxUnavailable) or when the user deletes a pod (OnDelete);
// claims kept or deleted per persistentVolumeClaimRetentionPolicy; the
// templates kept as ControllerRevisions for `kubectl rollout`. It follows
// kube-controller-manager's statefulset controller.
package statefulset

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin statefulset`).
const Name = "statefulset"

const (
	version   = "0.1.0"
	component = "statefulset-controller"
	// byController indexes pods and revisions by "namespace/controllerUID",
	// orphans by "namespace".
	byController = "controller"
)

var kind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many StatefulSets are reconciled at once (default 5,
	// as kube-controller-manager's --concurrent-statefulset-syncs).
	Workers int `json:"workers"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get", "list", "watch"}},
		// finalizers: blockOwnerDeletion on the pods' ownerReferences.
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets/status", "statefulsets/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"controllerrevisions"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
		sdk.EventRule,
	}
	return p
}

type controller struct {
	client kubernetes.Interface
	sets   cache.Indexer
	pods   cache.Indexer
	revs   cache.Indexer
	claims cache.Indexer
	queue  workqueue.TypedRateLimitingInterface[string]
	exp    *expectations.Store
	events record.EventRecorder
	clock  clock.Clock
	logger *slog.Logger
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 5}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return nil, fmt.Errorf("plugin %s config: workers is %d: set it between 1 and 64", Name, cfg.Workers)
	}
	sets := f.Apps().V1().StatefulSets().Informer()
	podInf := f.Core().V1().Pods().Informer()
	revInf := f.Apps().V1().ControllerRevisions().Informer()
	claimInf := f.Core().V1().PersistentVolumeClaims().Informer()
	for what, inf := range map[string]cache.SharedIndexInformer{"pods": podInf, "controllerrevisions": revInf} {
		if err := inf.AddIndexers(cache.Indexers{byController: indexByController}); err != nil {
			return nil, fmt.Errorf("indexing %s by controller: %w", what, err)
		}
	}
	clk := clock.RealClock{}
	c := &controller{
		client: client, sets: sets.GetIndexer(), pods: podInf.GetIndexer(), revs: revInf.GetIndexer(), claims: claimInf.GetIndexer(),
		queue: sdk.NewQueue[string](Name), exp: expectations.New(clk, expectations.DefaultTTL),
		clock: clk, logger: env.Logger,
	}
	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"statefulsets", sets, cache.ResourceEventHandlerFuncs{AddFunc: c.enqueue, UpdateFunc: func(_, o any) { c.enqueue(o) }, DeleteFunc: c.deleteSet}},
		{"pods", podInf, cache.ResourceEventHandlerFuncs{AddFunc: c.addPod, UpdateFunc: c.updatePod, DeleteFunc: c.deletePod}},
		{"controllerrevisions", revInf, cache.ResourceEventHandlerFuncs{AddFunc: c.enqueueOwner, UpdateFunc: func(_, o any) { c.enqueueOwner(o) }, DeleteFunc: c.enqueueOwner}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("watching %s: %w", h.what, err)
		}
	}
	return func(ctx context.Context) error {
		c.events = sdk.NewEventRecorder(ctx, client, component)
		c.logger.Info("controller started", "workers", cfg.Workers)
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		return nil
	}, nil
}

func indexByController(obj any) ([]string, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{m.GetNamespace() + "/" + string(ref.UID)}, nil
	}
	return []string{m.GetNamespace()}, nil
}

// transform keeps of a pod only what the controller reads (its identity,
// owner, revision, node, phase and readiness); other objects lose their
// managedFields.
func transform(obj any) (any, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, OwnerReferences: p.OwnerReferences,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   v1.PodSpec{NodeName: p.Spec.NodeName},
		Status: v1.PodStatus{Phase: p.Status.Phase},
	}
	if c := pods.ReadyCondition(p); c != nil {
		s.Status.Conditions = []v1.PodCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
	}
	return s, nil
}

func (c *controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *controller) deleteSet(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.exp.Delete(key)
		c.queue.Add(key)
	}
}

// ownerKey returns the key of the cached StatefulSet that controls m.
func (c *controller) ownerKey(m metav1.Object) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(m)
	if ref == nil || ref.Kind != kind.Kind {
		return "", false
	}
	key := m.GetNamespace() + "/" + ref.Name
	obj, ok, _ := c.sets.GetByKey(key)
	if !ok || obj.(*appsv1.StatefulSet).UID != ref.UID {
		return "", false
	}
	return key, true
}

func (c *controller) enqueueOwner(obj any) {
	if m, ok := tombstone.Object[metav1.Object](obj); ok {
		if key, ok := c.ownerKey(m); ok {
			c.queue.Add(key)
		}
	}
}

// enqueueSelecting queues the sets whose selector matches an orphan pod.
func (c *controller) enqueueSelecting(p *v1.Pod) {
	objs, _ := c.sets.ByIndex(cache.NamespaceIndex, p.Namespace)
	for _, o := range objs {
		set := o.(*appsv1.StatefulSet)
		sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
			c.enqueue(set)
		}
	}
}

func (c *controller) addPod(obj any) {
	p := obj.(*v1.Pod)
	if p.DeletionTimestamp != nil {
		c.deletePod(p)
		return
	}
	if key, ok := c.ownerKey(p); ok {
		c.exp.CreationObserved(key)
		c.queue.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(p) == nil {
		c.enqueueSelecting(p)
	}
}

func (c *controller) updatePod(oldObj, newObj any) {
	old, cur := oldObj.(*v1.Pod), newObj.(*v1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if cur.DeletionTimestamp != nil {
		c.deletePod(cur)
		return
	}
	if oldKey, ok := c.ownerKey(old); ok {
		c.queue.Add(oldKey)
	}
	key, ok := c.ownerKey(cur)
	if !ok {
		if metav1.GetControllerOfNoCopy(cur) == nil && !reflect.DeepEqual(old.Labels, cur.Labels) {
			c.enqueueSelecting(cur)
		}
		return
	}
	c.queue.Add(key)
	// minReadySeconds after readiness, the pod becomes available: no
	// event marks that moment, so look again then.
	if !pods.IsReady(old) && pods.IsReady(cur) {
		obj, _, _ := c.sets.GetByKey(key)
		if set, ok := obj.(*appsv1.StatefulSet); ok && set.Spec.MinReadySeconds > 0 {
			c.queue.AddAfter(key, secondsDuration(set.Spec.MinReadySeconds))
		}
	}
}

func (c *controller) deletePod(obj any) {
	p, ok := tombstone.Object[*v1.Pod](obj)
	if !ok {
		return
	}
	if key, ok := c.ownerKey(p); ok {
		c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
		c.queue.Add(key)
	}
}
