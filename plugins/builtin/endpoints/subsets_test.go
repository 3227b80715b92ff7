//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; these tests check what the endpoints controllers write there.

package endpoints

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podSpec struct {
	name, ip, node string
	ready          bool
	terminating    bool
	phase          corev1.PodPhase
	ports          map[string]int32
	hostname       string
	subdomain      string
}

func mkPod(p podSpec) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: "ns", UID: types.UID("uid-" + p.name)},
		Spec:       corev1.PodSpec{NodeName: p.node, Hostname: p.hostname, Subdomain: p.subdomain, Containers: []corev1.Container{{}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip},
	}
	if p.phase != "" {
		pod.Status.Phase = p.phase
	}
	if p.ip != "" {
		pod.Status.PodIPs = []corev1.PodIP{{IP: p.ip}}
	}
	if p.terminating {
		now := metav1.Now()
		pod.DeletionTimestamp = &now
	}
	status := corev1.ConditionFalse
	if p.ready {
		status = corev1.ConditionTrue
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	for name, port := range p.ports {
		pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports,
			corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
	return pod
}

// summary renders subsets as "ports -> ready | notReady" in order, so the
// canonical order is part of what is tested.
func summary(subsets []corev1.EndpointSubset) []string {
	var out []string
	for _, s := range subsets {
		var ports, ready, notReady []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", p.Name, p.Port))
		}
		for _, a := range s.Addresses {
			ready = append(ready, a.IP+host(a))
		}
		for _, a := range s.NotReadyAddresses {
			notReady = append(notReady, a.IP+host(a))
		}
		out = append(out, strings.Join(ports, ",")+" -> "+strings.Join(ready, ",")+" | "+strings.Join(notReady, ","))
	}
	return out
}

func host(a corev1.EndpointAddress) string {
	if a.Hostname == "" {
		return ""
	}
	return "(" + a.Hostname + ")"
}

func svcWith(spec corev1.ServiceSpec) *corev1.Service {
	spec.Selector = map[string]string{"app": "x"}
	if spec.ClusterIP == "" {
		spec.ClusterIP = "10.43.0.10"
	}
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"}, Spec: spec}
}

func TestDesiredSubsets(t *testing.T) {
	twoPorts := corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP},
		{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9100), Protocol: corev1.ProtocolTCP},
	}}
	tests := []struct {
		name string
		spec corev1.ServiceSpec
		pods []podSpec
		want []string
	}{
		{
			name: "named port resolved per pod, readiness split",
			spec: twoPorts,
			pods: []podSpec{
				{name: "a", ip: "10.0.0.2", ready: true, ports: map[string]int32{"web": 8080}},
				{name: "b", ip: "10.0.0.1", ready: false, ports: map[string]int32{"web": 8080}},
				{name: "c", ip: "10.0.0.3", ready: true, ports: map[string]int32{"web": 8081}},
				{name: "d", ip: "10.0.0.4", ready: true},
			},
			want: []string{
				"http=8080,metrics=9100 -> 10.0.0.2 | 10.0.0.1",
				"http=8081,metrics=9100 -> 10.0.0.3 | ",
				"metrics=9100 -> 10.0.0.4 | ",
			},
		},
		{
			name: "pods without address, finished or terminating left out",
			spec: twoPorts,
			pods: []podSpec{
				{name: "pending", ready: true},
				{name: "done", ip: "10.0.0.5", phase: corev1.PodSucceeded, ready: true},
				{name: "going", ip: "10.0.0.6", terminating: true, ready: true},
				{name: "ok", ip: "10.0.0.7", ready: true, ports: map[string]int32{"web": 80}},
			},
			want: []string{"http=80,metrics=9100 -> 10.0.0.7 | "},
		},
		{
			name: "publishNotReadyAddresses: everyone ready, terminating too",
			spec: corev1.ServiceSpec{PublishNotReadyAddresses: true, Ports: []corev1.ServicePort{{Name: "p", Port: 1, TargetPort: intstr.FromInt32(1)}}},
			pods: []podSpec{{name: "a", ip: "10.0.0.1"}, {name: "b", ip: "10.0.0.2", terminating: true}},
			want: []string{"p=1 -> 10.0.0.1,10.0.0.2 | "},
		},
		{
			name: "headless without ports, hostname published",
			spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
			pods: []podSpec{{name: "a", ip: "10.0.0.1", ready: true, hostname: "a", subdomain: "web"}, {name: "b", ip: "10.0.0.2"}},
			want: []string{" -> 10.0.0.1(a) | 10.0.0.2"},
		},
		{
			name: "no ports and not headless: nothing",
			spec: corev1.ServiceSpec{},
			pods: []podSpec{{name: "a", ip: "10.0.0.1", ready: true}},
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pods []*corev1.Pod
			for _, p := range tc.pods {
				pods = append(pods, mkPod(p))
			}
			got := summary(desiredSubsets(svcWith(tc.spec), pods))
			if !slices.Equal(got, tc.want) {
				t.Errorf("subsets\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestCanonicalMatchesUnpackedEndpoints(t *testing.T) {
	// Hand-written or older Endpoints may list one address per subset and
	// port: the canonical form is the same as ours, so no rewrite happens.
	node := "n"
	ref := func(ip string) corev1.EndpointAddress {
		return corev1.EndpointAddress{IP: ip, NodeName: &node, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: ip, ResourceVersion: "7"}}
	}
	p80 := corev1.EndpointPort{Name: "http", Port: 80}
	p90 := corev1.EndpointPort{Name: "m", Port: 90}
	unpacked := []corev1.EndpointSubset{
		{Addresses: []corev1.EndpointAddress{ref("10.0.0.2")}, Ports: []corev1.EndpointPort{p90}},
		{Addresses: []corev1.EndpointAddress{ref("10.0.0.1")}, Ports: []corev1.EndpointPort{p80}},
		{Addresses: []corev1.EndpointAddress{ref("10.0.0.2")}, Ports: []corev1.EndpointPort{p80}},
		{Addresses: []corev1.EndpointAddress{ref("10.0.0.1")}, Ports: []corev1.EndpointPort{p90}},
	}
	got := summary(canonical(unpacked))
	want := []string{"http=80,m=90 -> 10.0.0.1,10.0.0.2 | "}
	if !slices.Equal(got, want) {
		t.Errorf("canonical = %v, want %v", got, want)
	}
	if rv := canonical(unpacked)[0].Addresses[0].TargetRef.ResourceVersion; rv != "" {
		t.Errorf("target resourceVersion %q kept; it would make pod updates look like changes", rv)
	}
	if unpacked[0].Addresses[0].TargetRef.ResourceVersion != "7" {
		t.Error("canonical modified its input (an informer's cached object)")
	}
}

func TestTruncate(t *testing.T) {
	addrs := func(n int, base int) []corev1.EndpointAddress {
		var out []corev1.EndpointAddress
		for i := range n {
			out = append(out, corev1.EndpointAddress{IP: fmt.Sprintf("10.%d.%d.%d", base, i/250, i%250)})
		}
		return out
	}
	count := func(ss []corev1.EndpointSubset) (ready, notReady int) {
		for _, s := range ss {
			ready += len(s.Addresses)
			notReady += len(s.NotReadyAddresses)
		}
		return
	}
	t.Run("under capacity untouched", func(t *testing.T) {
		ss := []corev1.EndpointSubset{{Addresses: addrs(600, 1), NotReadyAddresses: addrs(400, 2)}}
		if truncate(ss) {
			t.Error("truncated 1000 addresses")
		}
	})
	t.Run("not ready dropped first", func(t *testing.T) {
		ss := []corev1.EndpointSubset{{Addresses: addrs(900, 1), NotReadyAddresses: addrs(300, 2)}}
		if !truncate(ss) {
			t.Fatal("not truncated")
		}
		if r, n := count(ss); r != 900 || n != 100 {
			t.Errorf("kept %d ready, %d not ready; want 900, 100", r, n)
		}
	})
	t.Run("ready cut in proportion", func(t *testing.T) {
		ss := []corev1.EndpointSubset{{Addresses: addrs(1500, 1), NotReadyAddresses: addrs(10, 2)}, {Addresses: addrs(500, 3)}}
		truncate(ss)
		if r, n := count(ss); r != maxAddresses || n != 0 {
			t.Errorf("kept %d ready, %d not ready; want %d, 0", r, n, maxAddresses)
		}
		if len(ss[0].Addresses) != 750 || len(ss[1].Addresses) != 250 {
			t.Errorf("split %d/%d, want 750/250", len(ss[0].Addresses), len(ss[1].Addresses))
		}
	})
}

func TestDesiredObjectAndUpToDate(t *testing.T) {
	svc := svcWith(corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "p", Port: 1, TargetPort: intstr.FromInt32(1)}}})
	svc.Labels = map[string]string{"team": "a"}
	pods := []*corev1.Pod{mkPod(podSpec{name: "a", ip: "10.0.0.1", ready: true})}

	want := desired(svc, pods, nil)
	if want.Labels["team"] != "a" || want.Labels[labelManagedBy] != controllerName {
		t.Errorf("labels %v: want the service's plus managed-by", want.Labels)
	}
	if _, ok := want.Labels[corev1.IsHeadlessService]; !ok {
		t.Errorf("headless service's endpoints lack %s", corev1.IsHeadlessService)
	}
	stored := want.DeepCopy()
	stored.ResourceVersion = "5"
	stored.Annotations = map[string]string{"someone.else/note": "kept"}
	again := desired(svc, pods, stored)
	if !upToDate(stored, again) {
		t.Error("an unchanged service is rewritten")
	}
	if again.Annotations["someone.else/note"] != "kept" || again.ResourceVersion != "5" {
		t.Error("the rewrite would drop others' annotations or the resourceVersion")
	}
	svc.Labels["team"] = "b"
	if upToDate(stored, desired(svc, pods, stored)) {
		t.Error("a label change on the service is not propagated")
	}
}
