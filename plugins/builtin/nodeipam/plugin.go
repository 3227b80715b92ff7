// Package nodeipam is the built-in node IPAM plugin: it gives every Node a
// range of the cluster's pod CIDR (spec.podCIDR and spec.podCIDRs, one
// range per IP family), from which the node's agent hands out pod IPs.
//
// Like upstream's range allocator it never gives one range to two Nodes,
// frees a Node's ranges when the Node is deleted, keeps the service range
// out, and reports CIDRNotAvailable on a Node when the pod CIDR is
// exhausted. Its allocation map lives only in memory and is rebuilt from
// the Nodes every time it starts (on every new leader).
package nodeipam

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin nodeipam`).
const Name = "nodeipam"

const version = "0.1.0"

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, setup, informers.WithTransform(trimNode))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	}
	return p
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
	_, r, err := parseConfig(env.Config)
	if err != nil {
		return nil, err
	}
	alloc, err := newAllocator(r)
	if err != nil {
		return nil, fmt.Errorf("plugins.config.nodeipam: %w", err)
	}
	nodes := factory.Core().V1().Nodes()
	c := &controller{
		client: client,
		nodes:  nodes.Lister(),
		alloc:  alloc,
		queue:  sdk.NewQueue[string](Name),
		log:    env.Logger,
	}
	if _, err := nodes.Informer().AddEventHandler(sdk.EnqueueObjects(c.queue)); err != nil {
		return nil, fmt.Errorf("watching nodes: %w", err)
	}
	return func(ctx context.Context) error {
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		defer broadcaster.Shutdown()
		c.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "cidrAllocator"})
		if err := c.rebuild(); err != nil {
			return err
		}
		c.run(ctx)
		return nil
	}, nil
}

// trimNode keeps what the allocator reads of a Node: its identity, version
// and ranges.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, DeletionTimestamp: n.DeletionTimestamp},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
	}, nil
}
