// Package nodelifecycle is the built-in node lifecycle plugin, upstream's
// node lifecycle and taint eviction controllers in one:
//
//   - nodes outside the gossip pool (kwok, virtual-kubelet: no keelson
//     agent) are watched through their Lease in kube-node-lease and their
//     status; silent for the grace period, their Ready (and pressure)
//     conditions become Unknown. Gossip nodes are the raft leader's
//     (core/liveness); their conditions are read like any other's;
//   - conditions become NoSchedule taints (not-ready, unreachable,
//     memory/disk/PID pressure, network-unavailable; unschedulable from
//     spec.unschedulable);
//   - a not-ready or unreachable node gets the matching NoExecute taint, at
//     most --node-eviction-rate nodes per second per zone, slower when a
//     zone is partially disrupted and not at all for small zones, and never
//     while every zone is down (zone states Normal, PartialDisruption,
//     FullDisruption as upstream computes them);
//   - pods on a node with NoExecute taints are deleted once their
//     tolerations run out (tolerationSeconds; DefaultTolerationSeconds
//     admission gives every pod 300 s for not-ready and unreachable),
//     marked as disruption targets first; pods of a node that stopped being
//     ready are marked NotReady;
//   - every node carries the TTL annotation for the cluster's size, as
//     upstream's ttl controller sets it (ttl.go).
package nodelifecycle

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	coordinationinformers "k8s.io/client-go/informers/coordination/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/nodehealth"
)

// Name is the plugin's name (`keelson plugin nodelifecycle`).
const Name = "nodelifecycle"

const version = "0.1.0"

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, func(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
		return setup(ctx, env, client, f, clock.RealClock{})
	}, informers.WithTransform(trim))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	}
	return p
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory, clk clock.WithTicker) (func(context.Context) error, error) {
	c, err := build(env, client, factory, clk)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		c.nodeEvents = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "node-controller"})
		c.podEvents = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "taint-eviction-controller"})
		cfg := c.cfg
		env.Logger.Info("node lifecycle started", "grace_period", cfg.NodeMonitorGracePeriod.Duration,
			"eviction_rate", cfg.NodeEvictionRate, "secondary_eviction_rate", cfg.SecondaryNodeEvictionRate,
			"unhealthy_zone_threshold", cfg.UnhealthyZoneThreshold, "large_cluster_size_threshold", cfg.LargeClusterSizeThreshold)
		c.run(ctx)
		return nil
	}, nil
}

// build makes the controller and registers its informers on factory.
func build(env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory, clk clock.WithTicker) (*controller, error) {
	cfg, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	c := newController(cfg, clk, client, env.Logger)
	nodes := factory.Core().V1().Nodes()
	c.nodes = nodes.Lister()
	pods := factory.InformerFor(&corev1.Pod{}, boundPodsInformer)
	c.pods = pods.GetIndexer()
	leases := factory.InformerFor(&coordinationv1.Lease{}, nodeLeasesInformer)
	c.leases = coordinationlisters.NewLeaseLister(leases.GetIndexer()).Leases(corev1.NamespaceNodeLease)
	if _, err := nodes.Informer().AddEventHandler(c.nodeHandler()); err != nil {
		return nil, fmt.Errorf("watching nodes: %w", err)
	}
	if _, err := pods.AddEventHandler(c.podHandler()); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	return c, nil
}

// boundPodsInformer watches only pods bound to a node, indexed by node.
func boundPodsInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return coreinformers.NewFilteredPodInformer(client, metav1.NamespaceAll, resync,
		cache.Indexers{podsByNode: func(obj any) ([]string, error) {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				return []string{p.Spec.NodeName}, nil
			}
			return nil, nil
		}},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		})
}

// nodeLeasesInformer watches the node heartbeats in kube-node-lease.
func nodeLeasesInformer(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
	return coordinationinformers.NewFilteredLeaseInformer(client, corev1.NamespaceNodeLease, resync, cache.Indexers{}, nil)
}

// trim keeps in the caches only what the controller reads.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Node:
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, CreationTimestamp: o.CreationTimestamp,
			Labels: pick(o.Labels, corev1.LabelTopologyRegion, corev1.LabelTopologyZone,
				corev1.LabelFailureDomainBetaRegion, corev1.LabelFailureDomainBetaZone, labelExcludeDisruption),
			Annotations: pick(o.Annotations, nodehealth.LivenessAnnotation, TTLAnnotation),
		}}
		n.Spec.Taints, n.Spec.Unschedulable = o.Spec.Taints, o.Spec.Unschedulable
		n.Status.Conditions = o.Status.Conditions
		return n, nil
	case *corev1.Pod:
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
			CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp,
		}}
		p.Spec.NodeName, p.Spec.Tolerations = o.Spec.NodeName, o.Spec.Tolerations
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.PodReady || c.Type == corev1.DisruptionTarget {
				p.Status.Conditions = append(p.Status.Conditions, c)
			}
		}
		return p, nil
	case *coordinationv1.Lease:
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, ResourceVersion: o.ResourceVersion},
			Spec:       coordinationv1.LeaseSpec{RenewTime: o.Spec.RenewTime},
		}, nil
	}
	return obj, nil
}

func pick(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
