package endpointslice

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/internal/sliceset"
)

func service(spec corev1.ServiceSpec) *corev1.Service {
	spec.Selector = map[string]string{"app": "web"}
	if spec.ClusterIP == "" {
		spec.ClusterIP = "10.43.0.10"
		spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if spec.Ports == nil {
		spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP}}
	}
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "svc-uid", Labels: map[string]string{"team": "a"}}, Spec: spec}
}

func pod(name, ip, node string, port int32, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
	if port != 0 {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: port, Protocol: corev1.ProtocolTCP}}
	}
	return p
}

var zones = map[string]string{"node-a": "zone-a", "node-b": ""}

func nodes(name string) (*string, bool) {
	z, ok := zones[name]
	if !ok {
		return nil, false
	}
	if z == "" {
		return nil, true
	}
	return &z, true
}

// apply plays a plan against the stored slices, as the API server would,
// naming created slices web-1, web-2, ...
func apply(stored []*discoveryv1.EndpointSlice, p sliceset.Changes, next *int) []*discoveryv1.EndpointSlice {
	byName := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range stored {
		byName[s.Name] = s
	}
	for _, s := range p.Delete {
		delete(byName, s.Name)
	}
	for _, s := range p.Update {
		byName[s.Name] = s.DeepCopy()
	}
	for _, s := range p.Create {
		*next++
		c := s.DeepCopy()
		c.Name = fmt.Sprintf("web-%d", *next)
		byName[c.Name] = c
	}
	var out []*discoveryv1.EndpointSlice
	for _, s := range byName {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func describe(list []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range list {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", *p.Name, *p.Port))
		}
		var eps []string
		for _, e := range s.Endpoints {
			eps = append(eps, fmt.Sprintf("%s:%v/%v/%v@%s", strings.Join(e.Addresses, ","), *e.Conditions.Ready, *e.Conditions.Serving,
				*e.Conditions.Terminating, ptr.Deref(e.Zone, "-")))
		}
		out = append(out, fmt.Sprintf("%s %s [%s] %s", s.Name, s.AddressType, strings.Join(ports, ","), strings.Join(eps, " ")))
	}
	return out
}

func TestPlanFromScratchAndStable(t *testing.T) {
	svc := service(corev1.ServiceSpec{})
	pods := []*corev1.Pod{
		pod("a", "10.0.0.1", "node-a", 8080, true),
		pod("b", "10.0.0.2", "node-b", 8080, false),
		pod("c", "10.0.0.3", "node-a", 8081, true),
		pod("pending", "", "node-a", 8080, true),
	}
	p, skipped := computePlan(svc, pods, nil, nodes, 100)
	if len(skipped) != 0 {
		t.Fatalf("skipped %v", skipped)
	}
	n := 0
	stored := apply(nil, p, &n)
	want := []string{
		"web-1 IPv4 [http=8080] 10.0.0.1:true/true/false@zone-a 10.0.0.2:false/false/false@-",
		"web-2 IPv4 [http=8081] 10.0.0.3:true/true/false@zone-a",
	}
	if got := describe(stored); !slices.Equal(got, want) {
		t.Fatalf("slices\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	s := stored[0]
	if s.Labels[discoveryv1.LabelServiceName] != "web" || s.Labels[discoveryv1.LabelManagedBy] != controllerName || s.Labels["team"] != "a" {
		t.Errorf("labels %v", s.Labels)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != svc.UID || !*s.OwnerReferences[0].BlockOwnerDeletion {
		t.Errorf("owner references %v: want the service, blocking", s.OwnerReferences)
	}
	if s.GenerateName != "web-" {
		t.Errorf("generateName %q", s.GenerateName)
	}
	// Nothing changed: nothing to write.
	if p, _ := computePlan(svc, pods, stored, nodes, 100); len(p.Create)+len(p.Update)+len(p.Delete) != 0 {
		t.Errorf("stable state rewritten: %+v", p)
	}
}

func TestPlanUpdatesInPlace(t *testing.T) {
	svc := service(corev1.ServiceSpec{})
	pods := []*corev1.Pod{pod("a", "10.0.0.1", "node-a", 8080, true), pod("b", "10.0.0.2", "node-a", 8080, false)}
	n := 0
	p, _ := computePlan(svc, pods, nil, nodes, 100)
	stored := apply(nil, p, &n)

	// b becomes ready and a terminates: one slice updated, same name.
	now := metav1.Now()
	pods[0].DeletionTimestamp = &now
	pods[1] = pod("b", "10.0.0.2", "node-a", 8080, true)
	p, _ = computePlan(svc, pods, stored, nodes, 100)
	if len(p.Create) != 0 || len(p.Delete) != 0 || len(p.Update) != 1 {
		t.Fatalf("plan %d creates, %d updates, %d deletes; want one update", len(p.Create), len(p.Update), len(p.Delete))
	}
	stored = apply(stored, p, &n)
	want := []string{"web-1 IPv4 [http=8080] 10.0.0.1:false/true/true@zone-a 10.0.0.2:true/true/false@zone-a"}
	if got := describe(stored); !slices.Equal(got, want) {
		t.Errorf("slices %v, want %v", got, want)
	}

	// All pods gone: the slice is kept as the empty placeholder.
	p, _ = computePlan(svc, nil, stored, nodes, 100)
	stored = apply(stored, p, &n)
	want = []string{"web-1 IPv4 [] "}
	if got := describe(stored); !slices.Equal(got, want) {
		t.Errorf("without pods: %v, want %v (one empty slice)", got, want)
	}
	if p, _ := computePlan(svc, nil, stored, nodes, 100); len(p.Create)+len(p.Update)+len(p.Delete) != 0 {
		t.Errorf("placeholder rewritten: %+v", p)
	}
}

func TestPlanSplitsAtMaxAndFillsUp(t *testing.T) {
	svc := service(corev1.ServiceSpec{})
	var pods []*corev1.Pod
	for i := range 5 {
		pods = append(pods, pod(fmt.Sprintf("p%d", i), fmt.Sprintf("10.0.0.%d", i+1), "node-a", 8080, true))
	}
	n := 0
	p, _ := computePlan(svc, pods, nil, nodes, 2)
	stored := apply(nil, p, &n)
	if len(stored) != 3 {
		t.Fatalf("5 endpoints at 2 per slice in %d slices: %v", len(stored), describe(stored))
	}
	// Removing one pod rewrites only the slice it was in.
	p, _ = computePlan(svc, pods[1:], stored, nodes, 2)
	if len(p.Create) != 0 || len(p.Update)+len(p.Delete) != 1 {
		t.Errorf("removing one endpoint: %d creates, %d updates, %d deletes", len(p.Create), len(p.Update), len(p.Delete))
	}
	stored = apply(stored, p, &n)
	total := 0
	for _, s := range stored {
		total += len(s.Endpoints)
		if len(s.Endpoints) > 2 {
			t.Errorf("slice %s over capacity", s.Name)
		}
	}
	if total != 4 {
		t.Errorf("%d endpoints stored, want 4", total)
	}
}

func TestPlanUnknownNodeAndAddressTypes(t *testing.T) {
	svc := service(corev1.ServiceSpec{})
	pods := []*corev1.Pod{pod("lost", "10.0.0.1", "ghost", 8080, true)}
	p, skipped := computePlan(svc, pods, nil, nodes, 100)
	if len(skipped) != 1 || !strings.Contains(skipped[0].Error(), `node "ghost" not found`) {
		t.Errorf("skipped = %v", skipped)
	}
	if len(p.Create) != 1 || len(p.Create[0].Endpoints) != 0 {
		t.Errorf("want only the placeholder, got %v", describe(p.Create))
	}
	svc.Spec.PublishNotReadyAddresses = true
	if p, skipped := computePlan(svc, pods, nil, nodes, 100); len(skipped) != 0 || len(p.Create[0].Endpoints) != 1 {
		t.Errorf("publishNotReadyAddresses publishes a pod on an unknown node: skipped %v, %v", skipped, describe(p.Create))
	}

	// A headless service without families gets both address types; a
	// stale slice of a type the service no longer has is deleted.
	headless := service(corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone})
	if got := addressTypes(headless); !slices.Equal(got, []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}) {
		t.Errorf("headless address types %v", got)
	}
	stale := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "old"}, AddressType: discoveryv1.AddressTypeFQDN}
	p, _ = computePlan(service(corev1.ServiceSpec{}), nil, []*discoveryv1.EndpointSlice{stale}, nodes, 100)
	if len(p.Delete) != 1 || p.Delete[0].Name != "old" {
		t.Errorf("stale address type not deleted: %+v", p)
	}
}

func TestPlanRecyclesSliceOfPreviousService(t *testing.T) {
	// A slice left by a deleted Service of the same name is not updated
	// (the garbage collector is deleting it) but replaced.
	svc := service(corev1.ServiceSpec{})
	old := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-old", OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", UID: "previous"}}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	p, _ := computePlan(svc, []*corev1.Pod{pod("a", "10.0.0.1", "node-a", 8080, true)}, []*discoveryv1.EndpointSlice{old}, nodes, 100)
	if len(p.Create) != 1 || len(p.Delete) != 1 || len(p.Update) != 0 {
		t.Errorf("plan %d creates, %d updates, %d deletes; want the foreign slice replaced", len(p.Create), len(p.Update), len(p.Delete))
	}
}
