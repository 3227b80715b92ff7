package main

import (
	"context"
	"fmt"
	"slices"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

// leader writes the status of our Ingresses.
type leader struct {
	client               kubernetes.Interface
	ings, classes, nodes cache.SharedIndexInformer
}

// runLeader is the leader part: one queue of Ingress keys, worked off by
// sdk.RunWorkers; a Node or class change requeues every Ingress.
func runLeader(ctx context.Context, env sdk.Env) error {
	if _, err := parseConfig(env.Config); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	f := informers.NewSharedInformerFactory(client, 0)
	l := &leader{client: client, ings: f.Networking().V1().Ingresses().Informer(),
		classes: f.Networking().V1().IngressClasses().Informer(), nodes: f.Core().V1().Nodes().Informer()}
	q := sdk.NewQueue[string]("tinyingress-status")
	if _, err := l.ings.AddEventHandler(sdk.EnqueueObjects(q)); err != nil {
		return err
	}
	all := func() {
		for _, key := range l.ings.GetStore().ListKeys() {
			q.Add(key)
		}
	}
	if err := onChange(all, l.classes, l.nodes); err != nil {
		return err
	}
	defer f.Shutdown()
	if err := startAndSync(ctx, f); err != nil || ctx.Err() != nil {
		return err // nil: asked to stop while syncing
	}
	env.Ready("writing the status of Ingresses of controller " + ControllerName)
	sdk.RunWorkers(ctx, q, 1, l.reconcile, env.Logger)
	return nil
}

// reconcile sets one of our Ingresses' status to the nodes' addresses.
func (l *leader) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	obj, ok, err := l.ings.GetStore().GetByKey(key)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	ing := obj.(*networkingv1.Ingress)
	var classes []*networkingv1.IngressClass
	for _, o := range l.classes.GetStore().List() {
		classes = append(classes, o.(*networkingv1.IngressClass))
	}
	if !ours(ing, classes) {
		return sdk.Result{}, nil
	}
	want := l.addresses()
	if equality.Semantic.DeepEqual(ing.Status.LoadBalancer.Ingress, want) {
		return sdk.Result{}, nil
	}
	ing = ing.DeepCopy()
	ing.Status.LoadBalancer.Ingress = want
	_, err = l.client.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(ctx, ing, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	return sdk.Result{}, err
}

// addresses are the InternalIPs of the Nodes, sorted.
func (l *leader) addresses() []networkingv1.IngressLoadBalancerIngress {
	var ips []string
	for _, o := range l.nodes.GetStore().List() {
		for _, a := range o.(*v1.Node).Status.Addresses {
			if a.Type == v1.NodeInternalIP {
				ips = append(ips, a.Address)
			}
		}
	}
	slices.Sort(ips)
	out := make([]networkingv1.IngressLoadBalancerIngress, 0, len(ips))
	for _, ip := range slices.Compact(ips) {
		out = append(out, networkingv1.IngressLoadBalancerIngress{IP: ip})
	}
	return out
}

// onChange calls fn after every event of the informers.
func onChange(fn func(), infs ...cache.SharedIndexInformer) error {
	for _, inf := range infs {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { fn() }, UpdateFunc: func(any, any) { fn() }, DeleteFunc: func(any) { fn() },
		}); err != nil {
			return err
		}
	}
	return nil
}

// startAndSync starts the factory's informers and waits for their caches.
func startAndSync(ctx context.Context, f informers.SharedInformerFactory) error {
	f.Start(ctx.Done())
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok && ctx.Err() == nil {
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	return nil
}
