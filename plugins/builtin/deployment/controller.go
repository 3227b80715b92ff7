package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/ownership"
	"github.com/keelson/keelson/plugins/builtin/internal/recorder"
	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
)

var deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// maxRetries drops a Deployment from the queue after this many failed
// syncs in a row (its next change brings it back), as upstream.
const maxRetries = 15

// Controller reconciles Deployments.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	logger *slog.Logger
	clock  clock.Clock

	deployments cache.SharedIndexInformer
	replicaSets cache.SharedIndexInformer

	loop   workqueue.TypedRateLimitingInterface[string]
	events record.EventRecorder
}

// New registers the Deployment and ReplicaSet informers on factory (which
// must apply Transform) and returns the controller. It watches no pods:
// what it needs of them (Recreate waits until the old ones are gone) it
// reads from its ReplicaSets' status.
func New(cfg Config, client kubernetes.Interface, factory informers.SharedInformerFactory, logger *slog.Logger, clk clock.Clock) (*Controller, error) {
	c := &Controller{
		cfg:         cfg,
		client:      client,
		logger:      logger,
		clock:       clk,
		deployments: factory.Apps().V1().Deployments().Informer(),
		replicaSets: factory.Apps().V1().ReplicaSets().Informer(),
	}
	c.loop = sdk.NewQueue[string]("deployments")
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{c.deployments, cache.ResourceEventHandlerFuncs{AddFunc: c.enqueue, UpdateFunc: func(_, o any) { c.enqueue(o) }, DeleteFunc: c.enqueue}},
		{c.replicaSets, cache.ResourceEventHandlerFuncs{AddFunc: c.addReplicaSet, UpdateFunc: c.updateReplicaSet, DeleteFunc: c.deleteReplicaSet}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("adding an event handler: %w", err)
		}
	}
	return c, nil
}

// Run reconciles until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) error {
	events, stop := recorder.Start(ctx, c.client, "deployment-controller")
	defer stop()
	c.events = events
	c.logger.Info("controller started", "workers", c.cfg.Workers)
	// A write racing another writer (a user's kubectl) is a conflict, which
	// the loop retries on the newer object and logs at debug level.
	sdk.RunWorkers(ctx, c.loop, c.cfg.Workers, c.reconcile, c.logger, sdk.WithMaxRetries(maxRetries))
	c.logger.Info("controller stopped")
	return nil
}

// reconcile adapts sync to the SDK's loop: a Deployment in a namespace
// being deleted cannot get new ReplicaSets, so that failure is terminal.
func (c *Controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	err := c.sync(ctx, key)
	if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
		return sdk.Result{}, sdk.TerminalError(err)
	}
	return sdk.Result{}, err
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		c.logger.Error("cannot key object", "error", err)
		return
	}
	c.loop.Add(key)
}

func keyOf(d *appsv1.Deployment) string { return cache.NewObjectName(d.Namespace, d.Name).String() }

// deploymentOf returns the cached Deployment ref points to, if it still is
// the same object.
func (c *Controller) deploymentOf(namespace string, ref *metav1.OwnerReference) *appsv1.Deployment {
	if ref == nil || ref.Kind != deploymentKind.Kind {
		return nil
	}
	obj, ok, err := c.deployments.GetIndexer().GetByKey(cache.NewObjectName(namespace, ref.Name).String())
	if err != nil || !ok {
		return nil
	}
	d := obj.(*appsv1.Deployment)
	if d.UID != ref.UID {
		return nil
	}
	return d
}

// deploymentsSelecting returns the Deployments whose selector matches an
// orphan ReplicaSet's labels (candidates to adopt it).
func (c *Controller) deploymentsSelecting(rs *appsv1.ReplicaSet) []*appsv1.Deployment {
	if len(rs.Labels) == 0 {
		return nil
	}
	objs, err := c.deployments.GetIndexer().ByIndex(cache.NamespaceIndex, rs.Namespace)
	if err != nil {
		return nil
	}
	var out []*appsv1.Deployment
	for _, o := range objs {
		d := o.(*appsv1.Deployment)
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(rs.Labels)) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func (c *Controller) addReplicaSet(obj any) {
	rs := obj.(*appsv1.ReplicaSet)
	if rs.DeletionTimestamp != nil {
		c.deleteReplicaSet(rs)
		return
	}
	if ref := metav1.GetControllerOfNoCopy(rs); ref != nil {
		if d := c.deploymentOf(rs.Namespace, ref); d != nil {
			c.loop.Add(keyOf(d))
		}
		return
	}
	for _, d := range c.deploymentsSelecting(rs) {
		c.loop.Add(keyOf(d))
	}
}

func (c *Controller) updateReplicaSet(oldObj, newObj any) {
	old, cur := oldObj.(*appsv1.ReplicaSet), newObj.(*appsv1.ReplicaSet)
	if cur.ResourceVersion == old.ResourceVersion {
		return
	}
	curRef, oldRef := metav1.GetControllerOfNoCopy(cur), metav1.GetControllerOfNoCopy(old)
	refChanged := !reflect.DeepEqual(curRef, oldRef)
	if refChanged && oldRef != nil {
		if d := c.deploymentOf(old.Namespace, oldRef); d != nil {
			c.loop.Add(keyOf(d))
		}
	}
	if curRef != nil {
		if d := c.deploymentOf(cur.Namespace, curRef); d != nil {
			c.loop.Add(keyOf(d))
		}
		return
	}
	if refChanged || !reflect.DeepEqual(cur.Labels, old.Labels) {
		for _, d := range c.deploymentsSelecting(cur) {
			c.loop.Add(keyOf(d))
		}
	}
}

func (c *Controller) deleteReplicaSet(obj any) {
	rs, ok := tombstone.Object[*appsv1.ReplicaSet](obj)
	if !ok {
		return
	}
	if d := c.deploymentOf(rs.Namespace, metav1.GetControllerOfNoCopy(rs)); d != nil {
		c.loop.Add(keyOf(d))
	}
}

// claimReplicaSets returns the ReplicaSets d controls, adopting matching
// orphans and releasing controlled ones that no longer match.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s has an invalid selector: %w", d.Namespace, d.Name, err)
	}
	objs, err := c.replicaSets.GetIndexer().ByIndex(cache.NamespaceIndex, d.Namespace)
	if err != nil {
		return nil, fmt.Errorf("listing replica sets of %s: %w", d.Namespace, err)
	}
	all := make([]*appsv1.ReplicaSet, 0, len(objs))
	for _, o := range objs {
		all = append(all, o.(*appsv1.ReplicaSet))
	}
	canAdopt := ownership.Recheck(d.UID, func(ctx context.Context) (metav1.Object, error) {
		return c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
	})
	patch := func(ctx context.Context, namespace, name string, data []byte) error {
		_, err := c.client.AppsV1().ReplicaSets(namespace).Patch(ctx, name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
		return err
	}
	claimer := ownership.NewClaimer(d, deploymentKind, canAdopt, patch)
	return ownership.Claim(ctx, claimer, all, func(rs *appsv1.ReplicaSet) bool {
		return sel.Matches(labels.Set(rs.Labels))
	})
}

// errUnknownStrategy is returned for a strategy this controller does not
// know (the API server admits only Recreate and RollingUpdate).
var errUnknownStrategy = errors.New("unknown deployment strategy")
