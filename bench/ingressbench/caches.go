package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/ingress"
)

// ingressesEnv is the number of extra Ingresses the keelson child holds.
const ingressesEnv = "KEELSON_INGRESSBENCH_INGRESSES"

// caches stand in for the node part's informer caches of a cluster with n
// Ingresses, each with its own Service and an EndpointSlice of three ready
// endpoints: client-go indexers holding objects as the node part keeps
// them (its transform drops managedFields, Service status and most of its
// spec, endpoint target references; an Ingress keeps kubectl's
// last-applied annotation).
type caches struct {
	ings, svcs, slices cache.Indexer
}

func newCaches(n int) (*caches, error) {
	c := &caches{
		ings:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		svcs:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		slices: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{"service": sliceService}),
	}
	created := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := range n {
		ns, name := fmt.Sprintf("ns-%d", i%50), fmt.Sprintf("app-%d", i)
		meta := func(kind string) metav1.ObjectMeta {
			return metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(fmt.Sprintf("%08d-0000-4000-8000-%s", i, kind)),
				ResourceVersion: strconv.Itoa(1000 + i), CreationTimestamp: created, Labels: map[string]string{"app": name}}
		}
		im := meta("00000000ing1")
		im.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": lastApplied(ns, name)}
		ing := &networkingv1.Ingress{ObjectMeta: im, Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{hostRule(name+".example", name, 80)}}}
		svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, ResourceVersion: im.ResourceVersion},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, Ports: []v1.ServicePort{{Name: "web", Port: 80, Protocol: v1.ProtocolTCP}}}}
		sm := meta("00000slice01")
		sm.Name += "-abcde"
		sm.Labels = map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}
		slice := &discoveryv1.EndpointSlice{ObjectMeta: sm, AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(int32(8080)), Protocol: ptr.To(v1.ProtocolTCP)}}}
		for e := range 3 {
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 100+e, i/250, i%250+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
				NodeName:   ptr.To(fmt.Sprintf("node-%d", e)), Zone: ptr.To("zone-a")})
		}
		for _, add := range []struct {
			into cache.Indexer
			obj  any
		}{{c.ings, ing}, {c.svcs, svc}, {c.slices, slice}} {
			if err := add.into.Add(add.obj); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// world is the data plane's view of the caches and the bench's own route
// (benchIng, benchSvc and benchSlice, looked up first).
func (c *caches) world(benchIng *networkingv1.Ingress, benchSvc func(ns, name string) *v1.Service,
	benchSlices func(ns, name string) []*discoveryv1.EndpointSlice) ingress.World {
	w := ingress.World{Ingresses: []*networkingv1.Ingress{benchIng}}
	for _, o := range c.ings.List() {
		w.Ingresses = append(w.Ingresses, o.(*networkingv1.Ingress))
	}
	w.Service = func(ns, name string) *v1.Service {
		if o, ok, _ := c.svcs.GetByKey(ns + "/" + name); ok {
			return o.(*v1.Service)
		}
		return benchSvc(ns, name)
	}
	w.Slices = func(ns, name string) []*discoveryv1.EndpointSlice {
		objs, _ := c.slices.ByIndex("service", ns+"/"+name)
		if len(objs) == 0 {
			return benchSlices(ns, name)
		}
		out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			out = append(out, o.(*discoveryv1.EndpointSlice))
		}
		return out
	}
	return w
}

func sliceService(obj any) ([]string, error) {
	s := obj.(*discoveryv1.EndpointSlice)
	return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
}

func hostRule(host, svc string, port int32) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host,
		IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
			Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: port}}},
		}}}}}
}

// lastApplied is the annotation kubectl apply leaves on an Ingress like
// the ones newCaches makes.
func lastApplied(ns, name string) string {
	return strings.NewReplacer("NS", ns, "NAME", name).Replace(`{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"annotations":{},"labels":{"app":"NAME"},"name":"NAME","namespace":"NS"},"spec":{"rules":[{"host":"NAME.example","http":{"paths":[{"backend":{"service":{"name":"NAME","port":{"number":80}}},"path":"/","pathType":"Prefix"}]}}]}}` + "\n")
}

// ingressesFromEnv reads ingressesEnv (unset: none).
func ingressesFromEnv() (int, error) {
	s := os.Getenv(ingressesEnv)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q is not a count", ingressesEnv, s)
	}
	return n, nil
}

// memory is a process's resident set now and at its peak, in MiB, from
// /proc/PID/status.
func memory(pid int) (rss, peak float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = kb / 1024
		} else {
			peak = kb / 1024
		}
	}
	return rss, peak, nil
}
