package metricsserver

import (
	"context"
	"net"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	aggfake "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset/fake"
)

func TestRegistrarPublishesAndFollowsTheLeader(t *testing.T) {
	ctx := context.Background()
	client, agg := fake.NewClientset(), aggfake.NewSimpleClientset()
	first := &registrar{client: client, agg: agg, reg: registration{advertise: net.ParseIP("10.0.0.1"), port: 6446, caBundle: []byte("ca-1")}}
	if err := first.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := client.CoreV1().Services(namespace).Get(ctx, serviceName, metav1.GetOptions{})
	if err != nil || len(svc.Spec.Selector) != 0 || svc.Spec.Ports[0].Name != portName || svc.Spec.Ports[0].Port != 443 || svc.Spec.Ports[0].TargetPort.IntVal != 6446 {
		t.Fatalf("service %+v %v", svc, err)
	}
	slice := getSlice(t, client)
	if slice.Labels[discoveryv1.LabelServiceName] != serviceName || slice.AddressType != discoveryv1.AddressTypeIPv4 ||
		slice.Endpoints[0].Addresses[0] != "10.0.0.1" || *slice.Ports[0].Name != portName || *slice.Ports[0].Port != 6446 {
		t.Errorf("slice %+v", slice)
	}
	as, err := agg.ApiregistrationV1().APIServices().Get(ctx, "v1beta1.metrics.k8s.io", metav1.GetOptions{})
	if err != nil || as.Spec.Service.Name != serviceName || *as.Spec.Service.Port != 443 || string(as.Spec.CABundle) != "ca-1" || as.Spec.InsecureSkipTLSVerify {
		t.Fatalf("apiservice %+v %v", as, err)
	}
	role, err := client.RbacV1().ClusterRoles().Get(ctx, readerRoleName, metav1.GetOptions{})
	if err != nil || role.Labels["rbac.authorization.k8s.io/aggregate-to-view"] != "true" || role.Rules[0].APIGroups[0] != group {
		t.Fatalf("reader role %+v %v", role, err)
	}
	// A new leader, on an IPv6 address, with its own CA.
	next := &registrar{client: client, agg: agg, reg: registration{advertise: net.ParseIP("fd00::2"), port: 7000, caBundle: []byte("ca-2")}}
	if err := next.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	slice = getSlice(t, client)
	if slice.AddressType != discoveryv1.AddressTypeIPv6 || slice.Endpoints[0].Addresses[0] != "fd00::2" || *slice.Ports[0].Port != 7000 {
		t.Errorf("slice after the leader moved: %+v", slice)
	}
	as, _ = agg.ApiregistrationV1().APIServices().Get(ctx, "v1beta1.metrics.k8s.io", metav1.GetOptions{})
	svc, _ = client.CoreV1().Services(namespace).Get(ctx, serviceName, metav1.GetOptions{})
	if string(as.Spec.CABundle) != "ca-2" || svc.Spec.Ports[0].TargetPort.IntVal != 7000 {
		t.Errorf("after the leader moved: caBundle %q, target port %v", as.Spec.CABundle, svc.Spec.Ports[0].TargetPort)
	}
	// Unchanged: no writes.
	client.ClearActions()
	if err := next.ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("a republish with nothing changed wrote: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

func TestRegistrarRefusesAServiceSelectingPods(t *testing.T) {
	client := fake.NewClientset(&v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: serviceName},
		Spec: v1.ServiceSpec{Selector: map[string]string{"k8s-app": "metrics-server"}}})
	r := &registrar{client: client, agg: aggfake.NewSimpleClientset(), reg: registration{advertise: net.ParseIP("10.0.0.1"), port: 6446}}
	err := r.ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "selects pods") {
		t.Errorf("err %v, want one saying the Service selects pods", err)
	}
}

func getSlice(t *testing.T, client *fake.Clientset) *discoveryv1.EndpointSlice {
	t.Helper()
	s, err := client.DiscoveryV1().EndpointSlices(namespace).Get(context.Background(), sliceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
