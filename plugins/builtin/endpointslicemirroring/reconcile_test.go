//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; these tests check what the endpoints controllers write there.

package endpointslicemirroring

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func endpoints(subsets ...corev1.EndpointSubset) *corev1.Endpoints {
	return &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "ep-uid",
			Labels:      map[string]string{"team": "a"},
			Annotations: map[string]string{"note": "x", corev1.EndpointsLastChangeTriggerTime: "t", corev1.LastAppliedConfigAnnotation: "{}"}},
		Subsets: subsets,
	}
}

func addrs(ips ...string) []corev1.EndpointAddress {
	var out []corev1.EndpointAddress
	for _, ip := range ips {
		out = append(out, corev1.EndpointAddress{IP: ip})
	}
	return out
}

func summarize(m map[string]*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		s := m[k]
		var eps []string
		for _, e := range s.Endpoints {
			eps = append(eps, fmt.Sprintf("%s:%v", e.Addresses[0], *e.Conditions.Ready))
		}
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", *p.Name, *p.Port))
		}
		out = append(out, fmt.Sprintf("%s [%s] %s", s.AddressType, strings.Join(ports, ","), strings.Join(eps, " ")))
	}
	return out
}

func TestDesiredSlices(t *testing.T) {
	p := []corev1.EndpointPort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}
	tests := []struct {
		name             string
		ep               *corev1.Endpoints
		max              int
		want             []string
		invalid, skipped int
	}{
		{
			name: "the seed's example",
			ep:   endpoints(corev1.EndpointSubset{Addresses: addrs("1.2.3.4"), Ports: []corev1.EndpointPort{{Port: 9376}}}),
			max:  1000,
			want: []string{"IPv4 [=9376] 1.2.3.4:true"},
		},
		{
			name: "families split, not-ready mirrored, unpacked subsets merged",
			ep: endpoints(
				corev1.EndpointSubset{Addresses: addrs("10.0.0.2", "fd00::1"), Ports: p},
				corev1.EndpointSubset{Addresses: addrs("10.0.0.1"), NotReadyAddresses: addrs("10.0.0.3"), Ports: p},
			),
			max:  1000,
			want: []string{"IPv4 [pg=5432] 10.0.0.1:true 10.0.0.2:true 10.0.0.3:false", "IPv6 [pg=5432] fd00::1:true"},
		},
		{
			name:    "invalid addresses skipped",
			ep:      endpoints(corev1.EndpointSubset{Addresses: addrs("10.0.0.1", "not-an-ip"), Ports: p}),
			max:     1000,
			want:    []string{"IPv4 [pg=5432] 10.0.0.1:true"},
			invalid: 1,
		},
		{
			name:    "capped per subset, ready first",
			ep:      endpoints(corev1.EndpointSubset{Addresses: addrs("10.0.0.1", "10.0.0.2"), NotReadyAddresses: addrs("10.0.0.3"), Ports: p}),
			max:     2,
			want:    []string{"IPv4 [pg=5432] 10.0.0.1:true 10.0.0.2:true"},
			skipped: 1,
		},
		{
			name: "no subsets, no slices",
			ep:   endpoints(),
			max:  1000,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, invalid, skipped := desiredSlices(tc.ep, tc.max)
			if s := summarize(got); !slices.Equal(s, tc.want) {
				t.Errorf("slices %q, want %q", s, tc.want)
			}
			if invalid != tc.invalid || skipped != tc.skipped {
				t.Errorf("invalid %d skipped %d, want %d %d", invalid, skipped, tc.invalid, tc.skipped)
			}
			for _, s := range got {
				if s.Labels[discoveryv1.LabelServiceName] != "db" || s.Labels[discoveryv1.LabelManagedBy] != controllerName || s.Labels["team"] != "a" {
					t.Errorf("labels %v", s.Labels)
				}
				if !maps.Equal(s.Annotations, map[string]string{"note": "x"}) {
					t.Errorf("annotations %v: want the endpoints' but their own change markers", s.Annotations)
				}
				if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Endpoints" || s.OwnerReferences[0].UID != "ep-uid" {
					t.Errorf("owner %v", s.OwnerReferences)
				}
			}
		})
	}
}

func named(s *discoveryv1.EndpointSlice, name string) *discoveryv1.EndpointSlice {
	c := s.DeepCopy()
	c.Name, c.GenerateName, c.ResourceVersion = name, "", "1"
	return c
}

func TestPlanMirror(t *testing.T) {
	p := []corev1.EndpointPort{{Name: "pg", Port: 5432}}
	ep := endpoints(corev1.EndpointSubset{Addresses: addrs("10.0.0.1"), Ports: p})
	want, _, _ := desiredSlices(ep, 1000)
	current := named(want["IPv4/"+portsKeyOf(want)], "db-abc")

	if pl := planMirror(want, []*discoveryv1.EndpointSlice{current}); len(pl.Create)+len(pl.Update)+len(pl.Delete) != 0 {
		t.Errorf("in sync, yet plan %+v", pl)
	}
	// A duplicate is deleted; a changed endpoint updates the first slice.
	dup := named(current, "db-xyz")
	ep2 := endpoints(corev1.EndpointSubset{Addresses: addrs("10.0.0.2"), Ports: p})
	want2, _, _ := desiredSlices(ep2, 1000)
	pl := planMirror(want2, []*discoveryv1.EndpointSlice{dup, current})
	if len(pl.Update) != 1 || pl.Update[0].Name != "db-abc" || len(pl.Delete) != 1 || pl.Delete[0].Name != "db-xyz" || len(pl.Create) != 0 {
		t.Errorf("plan: update %v delete %v create %d", names(pl.Update), names(pl.Delete), len(pl.Create))
	}
	// A port change recycles the old slice rather than delete and create.
	ep3 := endpoints(corev1.EndpointSubset{Addresses: addrs("10.0.0.1"), Ports: []corev1.EndpointPort{{Name: "pg", Port: 6432}}})
	want3, _, _ := desiredSlices(ep3, 1000)
	pl = planMirror(want3, []*discoveryv1.EndpointSlice{current})
	if len(pl.Update) != 1 || pl.Update[0].Name != "db-abc" || len(pl.Create)+len(pl.Delete) != 0 {
		t.Errorf("port change: update %v delete %v create %d", names(pl.Update), names(pl.Delete), len(pl.Create))
	}
	if pl.Update[0].ResourceVersion != "1" || *pl.Update[0].Ports[0].Port != 6432 {
		t.Errorf("recycled slice %+v", pl.Update[0])
	}
}

func portsKeyOf(m map[string]*discoveryv1.EndpointSlice) string {
	for k := range m {
		_, after, _ := strings.Cut(k, "/")
		return after
	}
	return ""
}

func names(list []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

func TestShouldMirror(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta metav1.ObjectMeta
		want bool
	}{
		{"plain", metav1.ObjectMeta{}, true},
		{"opted out", metav1.ObjectMeta{Labels: map[string]string{discoveryv1.LabelSkipMirror: "true"}}, false},
		{"leader election lock", metav1.ObjectMeta{Annotations: map[string]string{"control-plane.alpha.kubernetes.io/leader": "{}"}}, false},
	} {
		if got := shouldMirror(&corev1.Endpoints{ObjectMeta: tc.meta}); got != tc.want {
			t.Errorf("%s: shouldMirror = %v", tc.name, got)
		}
	}
}
