// Package servicecidr is the built-in plugin that guards ServiceCIDRs, as
// kube-controller-manager's service-cidr controller does: every ServiceCIDR
// carries the networking.k8s.io/service-cidr-finalizer and a Ready
// condition; one being deleted keeps its finalizer (Ready=False, reason
// Terminating) while a Service ClusterIP allocated from it would be left
// outside every other ServiceCIDR, and loses it once none would, after a
// grace period that lets kube-apiserver's allocators see the deletion.
// kube-apiserver itself creates and repairs the default ServiceCIDR
// (`kubernetes`, from --service-cluster-ip-range).
package servicecidr

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	metav1apply "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingapply "k8s.io/client-go/applyconfigurations/networking/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "servicecidr"

// Finalizer protects a ServiceCIDR whose addresses are still in use.
const Finalizer = "networking.k8s.io/service-cidr-finalizer"

// allocatorName marks the IPAddresses kube-apiserver's ClusterIP allocator
// owns (label ipaddress.kubernetes.io/managed-by); others are not ours to
// protect.
const allocatorName = "ipallocator.k8s.io"

// DeletionGracePeriod is how long after a ServiceCIDR's deletion its
// finalizer stays, so no allocator still hands out an address from it.
const DeletionGracePeriod = 10 * time.Second

const blockedMessage = "There are still IPAddresses referencing the ServiceCIDR, please remove them or create a new ServiceCIDR"

// Plugin returns the servicecidr plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{networkingv1.GroupName}, Resources: []string{"servicecidrs"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{networkingv1.GroupName}, Resources: []string{"servicecidrs/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{networkingv1.GroupName}, Resources: []string{"ipaddresses"}, Verbs: []string{"list", "watch"}},
	}
	return p
}

type controller struct {
	client kubernetes.Interface
	cidrs  networkinglisters.ServiceCIDRLister
	ips    networkinglisters.IPAddressLister
	queue  workqueue.TypedRateLimitingInterface[string]
	clock  clock.PassiveClock
	logger *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	if err := sdk.DecodeConfig(env.Config, &struct{}{}); err != nil {
		return nil, fmt.Errorf("plugin %s takes no configuration: %w", Name, err)
	}
	cidrs, ips := f.Networking().V1().ServiceCIDRs(), f.Networking().V1().IPAddresses()
	c := &controller{client: client, cidrs: cidrs.Lister(), ips: ips.Lister(), queue: sdk.NewQueue[string](Name),
		clock: clock.RealClock{}, logger: env.Logger}
	// A ServiceCIDR's fate depends on the ServiceCIDRs overlapping it and
	// the addresses inside it: each of those changes re-examines it.
	if _, err := cidrs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueueOverlapping(obj) },
		UpdateFunc: func(_, obj any) { c.enqueueOverlapping(obj) },
		DeleteFunc: func(obj any) { c.enqueueOverlapping(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching servicecidrs: %w", err)
	}
	if _, err := ips.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueueContaining(obj) },
		DeleteFunc: func(obj any) { c.enqueueContaining(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching ipaddresses: %w", err)
	}
	return func(ctx context.Context) error {
		sdk.RunWorkers(ctx, c.queue, 2, c.reconcile, c.logger)
		return nil
	}, nil
}

func (c *controller) enqueueOverlapping(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	cidr, ok := obj.(*networkingv1.ServiceCIDR)
	if !ok {
		return
	}
	c.queue.Add(cidr.Name)
	all, _ := c.cidrs.List(labels.Everything())
	for _, other := range all {
		if overlaps(cidr, other) {
			c.queue.Add(other.Name)
		}
	}
}

func (c *controller) enqueueContaining(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ip, ok := obj.(*networkingv1.IPAddress)
	if !ok || ip.Labels[networkingv1.LabelManagedBy] != allocatorName {
		return
	}
	addr, err := netip.ParseAddr(ip.Name)
	if err != nil {
		return
	}
	all, _ := c.cidrs.List(labels.Everything())
	for _, cidr := range containing(all, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		c.queue.Add(cidr.Name)
	}
}

func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	cidr, err := c.cidrs.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if cidr.DeletionTimestamp == nil {
		if !slices.Contains(cidr.Finalizers, Finalizer) {
			if err := c.patchFinalizers(ctx, name, map[string]any{"finalizers": []string{Finalizer}}); err != nil {
				return sdk.Result{}, err
			}
		}
		return sdk.Result{}, c.setReady(ctx, cidr, metav1.ConditionTrue, "", "Kubernetes Service CIDR is ready")
	}
	if !slices.Contains(cidr.Finalizers, Finalizer) {
		return sdk.Result{}, nil
	}
	safe, err := c.canDelete(cidr)
	if err != nil {
		return sdk.Result{}, err
	}
	if !safe {
		return sdk.Result{}, c.setReady(ctx, cidr, metav1.ConditionFalse, networkingv1.ServiceCIDRReasonTerminating, blockedMessage)
	}
	if wait := DeletionGracePeriod - c.clock.Since(cidr.DeletionTimestamp.Time); wait > 0 {
		return sdk.Result{RequeueAfter: wait}, nil
	}
	if err := c.patchFinalizers(ctx, name, map[string]any{"$deleteFromPrimitiveList/finalizers": []string{Finalizer}}); err != nil {
		return sdk.Result{}, err
	}
	c.logger.Info("released servicecidr", "servicecidr", name)
	return sdk.Result{}, nil
}

// canDelete reports whether deleting cidr orphans no allocated address:
// each of its ranges is covered by another ServiceCIDR, or no address the
// allocator holds lies in it alone.
func (c *controller) canDelete(cidr *networkingv1.ServiceCIDR) (bool, error) {
	all, err := c.cidrs.List(labels.Everything())
	if err != nil {
		return false, err
	}
	others := slices.DeleteFunc(slices.Clone(all), func(o *networkingv1.ServiceCIDR) bool { return o.Name == cidr.Name })
	covered := true
	for _, p := range prefixes(cidr) {
		if len(containing(others, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) })) == 0 {
			covered = false
		}
	}
	if covered {
		return true, nil
	}
	ips, err := c.ips.List(labels.SelectorFromSet(labels.Set{networkingv1.LabelManagedBy: allocatorName}))
	if err != nil {
		return false, err
	}
	for _, ip := range ips {
		addr, err := netip.ParseAddr(ip.Name)
		if err != nil {
			continue
		}
		in := func(p netip.Prefix) bool { return p.Contains(addr) }
		if slices.ContainsFunc(prefixes(cidr), in) && len(containing(others, in)) == 0 {
			return false, nil
		}
	}
	return true, nil
}

// setReady applies the Ready condition unless it already says the same.
func (c *controller) setReady(ctx context.Context, cidr *networkingv1.ServiceCIDR, status metav1.ConditionStatus, reason, message string) error {
	for _, cond := range cidr.Status.Conditions {
		if cond.Type == networkingv1.ServiceCIDRConditionReady && cond.Status == status && cond.Reason == reason && cond.Message == message {
			return nil
		}
	}
	cond := metav1apply.Condition().WithType(networkingv1.ServiceCIDRConditionReady).WithStatus(status).
		WithMessage(message).WithLastTransitionTime(metav1.NewTime(c.clock.Now()))
	if reason != "" {
		cond.WithReason(reason)
	}
	apply := networkingapply.ServiceCIDR(cidr.Name).WithStatus(networkingapply.ServiceCIDRStatus().WithConditions(cond))
	_, err := c.client.NetworkingV1().ServiceCIDRs().ApplyStatus(ctx, apply, metav1.ApplyOptions{FieldManager: Name, Force: true})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("setting Ready=%s on servicecidr %s: %w", status, cidr.Name, err)
	}
	return nil
}

func (c *controller) patchFinalizers(ctx context.Context, name string, meta map[string]any) error {
	patch, err := jsonPatch(meta)
	if err != nil {
		return err
	}
	_, err = c.client.NetworkingV1().ServiceCIDRs().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("updating the finalizers of servicecidr %s: %w", name, err)
	}
	return nil
}
