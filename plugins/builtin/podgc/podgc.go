// Package podgc is the built-in pod garbage collector plugin, as
// kube-controller-manager's pod-garbage-collector: every 20 seconds it
// force-deletes (grace period 0)
//   - finished pods (Succeeded or Failed) beyond terminatedPodThreshold,
//     evicted ones first, then the oldest;
//   - terminating pods on a node that is not Ready and carries the
//     node.kubernetes.io/out-of-service taint (the operator's word that
//     the node is down and its pods may go);
//   - pods bound to a node that no longer exists, once the node has been
//     missing from the cache for 40 seconds and a live read confirms it;
//   - terminating pods that were never scheduled.
//
// A pod not yet finished is first set to phase Failed (an orphaned pod
// also gets the DisruptionTarget condition, reason DeletionByPodGC), as no
// kubelet is left to do it.
package podgc

import (
	"context"
	"log/slog"
	"time"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin podgc`).
const Name = "podgc"

const (
	version = "0.1.0"
	// checkPeriod is how often the collector looks at every pod.
	checkPeriod = 20 * time.Second
	// quarantine is how long a node must be missing from the cache before
	// it is read from the API server to confirm it is gone.
	quarantine = 40 * time.Second
	// passKey is the only key of the queue: one pass looks at everything.
	passKey = "pods"
)

// Config is the plugin's configuration section.
type Config struct {
	// TerminatedPodThreshold is how many finished pods may exist before
	// the oldest are deleted (default 12500, as kube-controller-manager's
	// --terminated-pod-gc-threshold); 0 keeps them all.
	TerminatedPodThreshold int `json:"terminatedPodThreshold"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, setup, informers.WithTransform(transform))
	// Upstream's pod-garbage-collector role.
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	}
	return p
}

// decodeConfig reads and checks the configuration section.
func decodeConfig(env sdk.Env) (Config, error) {
	cfg := Config{TerminatedPodThreshold: 12500}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return cfg, err
	}
	if cfg.TerminatedPodThreshold < 0 {
		return cfg, sdk.ConfigErrorf("terminatedPodThreshold", "terminatedPodThreshold is %d: set a number of finished pods to keep, or 0 to keep them all", cfg.TerminatedPodThreshold)
	}
	return cfg, nil
}

// controller is the collector. Its passes run one at a time (one worker
// on one key), so missingSince needs no lock.
type controller struct {
	client    kubernetes.Interface
	pods      cache.Indexer
	nodes     cache.Indexer
	threshold int
	// missingSince is when each node some pod is bound to was first seen
	// missing from the cache.
	missingSince map[string]time.Time
	queue        workqueue.TypedRateLimitingInterface[string]
	clock        clock.Clock
	logger       *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg, err := decodeConfig(env)
	if err != nil {
		return nil, err
	}
	c := newController(client, f, cfg, clock.RealClock{}, env.Logger)
	return func(ctx context.Context) error {
		c.logger.Info("controller started", "terminatedPodThreshold", c.threshold)
		c.queue.Add(passKey)
		sdk.RunWorkers(ctx, c.queue, 1, c.reconcile, c.logger)
		return nil
	}, nil
}

func newController(client kubernetes.Interface, f informers.SharedInformerFactory, cfg Config, clk clock.Clock, logger *slog.Logger) *controller {
	return &controller{
		client: client, pods: f.Core().V1().Pods().Informer().GetIndexer(), nodes: f.Core().V1().Nodes().Informer().GetIndexer(),
		threshold: cfg.TerminatedPodThreshold, missingSince: map[string]time.Time{},
		queue: sdk.NewQueue[string](Name), clock: clk, logger: logger,
	}
}

// reconcile makes one pass and comes back after checkPeriod. A pod that
// could not be deleted is logged and looked at again in the next pass.
func (c *controller) reconcile(ctx context.Context, _ string) (sdk.Result, error) {
	var ps []*v1.Pod
	for _, o := range c.pods.List() {
		ps = append(ps, o.(*v1.Pod))
	}
	if c.threshold > 0 {
		c.deleteAll(ctx, "terminated", c.terminatedBeyondThreshold(ps), nil)
	}
	c.deleteAll(ctx, "terminating on an out-of-service node", c.terminatingOutOfService(ps), nil)
	c.deleteAll(ctx, "orphaned", c.orphaned(ctx, ps), &v1.PodCondition{
		Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: "DeletionByPodGC", Message: "PodGC: node no longer exists",
	})
	c.deleteAll(ctx, "unscheduled terminating", unscheduledTerminating(ps), nil)
	return sdk.Result{RequeueAfter: checkPeriod}, nil
}

// transform keeps of a pod what the collector reads: identity, creation
// and deletion, node, phase, reason and DisruptionTarget condition; of a
// node its name, taints and Ready condition.
func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		s := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
				Generation: o.Generation, CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp},
			Spec:   v1.PodSpec{NodeName: o.Spec.NodeName},
			Status: v1.PodStatus{Phase: o.Status.Phase, Reason: o.Status.Reason},
		}
		for _, c := range o.Status.Conditions {
			if c.Type == v1.DisruptionTarget {
				s.Status.Conditions = append(s.Status.Conditions, c)
			}
		}
		return s, nil
	case *v1.Node:
		s := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion},
			Spec:       v1.NodeSpec{Taints: o.Spec.Taints},
		}
		for _, c := range o.Status.Conditions {
			if c.Type == v1.NodeReady {
				s.Status.Conditions = append(s.Status.Conditions, v1.NodeCondition{Type: c.Type, Status: c.Status})
			}
		}
		return s, nil
	}
	return sdk.StripManagedFields(obj)
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
