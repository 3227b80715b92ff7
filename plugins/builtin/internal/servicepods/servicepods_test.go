package servicepods

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func TestInEndpoints(t *testing.T) {
	now := metav1.Now()
	running := corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}
	tests := []struct {
		name               string
		pod                corev1.Pod
		includeTerminating bool
		want               bool
	}{
		{"running with an address", corev1.Pod{Status: running}, false, true},
		{"no address yet", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}}, false, false},
		{"succeeded", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.0.0.1"}}, true, false},
		{"failed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, PodIP: "10.0.0.1"}}, true, false},
		{"terminating, excluded", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: running}, false, false},
		{"terminating, included", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: running}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := InEndpoints(&tc.pod, tc.includeTerminating); got != tc.want {
				t.Errorf("InEndpoints = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFindPort(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
			{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
		}}},
		InitContainers: []corev1.Container{
			{Name: "init", Ports: []corev1.ContainerPort{{Name: "setup", ContainerPort: 7000, Protocol: corev1.ProtocolTCP}}},
			{Name: "proxy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001, Protocol: corev1.ProtocolTCP}}},
		},
	}}
	tests := []struct {
		name   string
		target intstr.IntOrString
		proto  corev1.Protocol
		want   int32
		ok     bool
	}{
		{"number", intstr.FromInt32(9000), corev1.ProtocolTCP, 9000, true},
		{"name", intstr.FromString("http"), corev1.ProtocolTCP, 8080, true},
		{"name with another protocol", intstr.FromString("http"), corev1.ProtocolUDP, 0, false},
		{"udp name", intstr.FromString("dns"), corev1.ProtocolUDP, 53, true},
		{"sidecar port", intstr.FromString("proxy"), corev1.ProtocolTCP, 15001, true},
		{"plain init container port", intstr.FromString("setup"), corev1.ProtocolTCP, 0, false},
		{"unknown name", intstr.FromString("grpc"), corev1.ProtocolTCP, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FindPort(pod, &corev1.ServicePort{TargetPort: tc.target, Protocol: tc.proto})
			if got != tc.want || ok != tc.ok {
				t.Errorf("FindPort = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestIPsAndFamily(t *testing.T) {
	dual := &corev1.Pod{Status: corev1.PodStatus{PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}, {IP: "fd00::0001"}}}}
	if got := IPs(dual, false); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Errorf("IPv4 addresses %v", got)
	}
	if got := IPs(dual, true); !slices.Equal(got, []string{"fd00::1"}) {
		t.Errorf("IPv6 addresses %v, want the canonical form", got)
	}
	legacy := &corev1.Pod{Status: corev1.PodStatus{PodIP: "10.0.0.2"}}
	if got := IPs(legacy, false); !slices.Equal(got, []string{"10.0.0.2"}) {
		t.Errorf("pod with podIP only: %v", got)
	}
	for _, tc := range []struct {
		name string
		svc  corev1.ServiceSpec
		want bool
	}{
		{"first family", corev1.ServiceSpec{IPFamilies: []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}}, true},
		{"cluster IP", corev1.ServiceSpec{ClusterIP: "fd00::10"}, true},
		{"headless: the pod's", corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}, false},
	} {
		if got := PrimaryFamilyIPv6(&corev1.Service{Spec: tc.svc}, dual); got != tc.want {
			t.Errorf("%s: PrimaryFamilyIPv6 = %v", tc.name, got)
		}
	}
}

func TestPublishHostnameAndSelects(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "a"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a"}, Spec: corev1.PodSpec{Hostname: "db-0", Subdomain: "db"}}
	if !PublishHostname(pod, svc) {
		t.Error("hostname of a pod naming the service as subdomain is not published")
	}
	pod.Spec.Subdomain = "other"
	if PublishHostname(pod, svc) {
		t.Error("hostname published for a service the pod does not name")
	}
	if !Selects(svc) {
		t.Error("service with a selector not managed")
	}
	if Selects(&corev1.Service{}) {
		t.Error("service without a selector managed")
	}
	if Selects(&corev1.Service{Spec: corev1.ServiceSpec{Selector: map[string]string{"a": "b"}, Type: corev1.ServiceTypeExternalName}}) {
		t.Error("ExternalName service managed")
	}
}

func TestSlimPodKeepsWhatEndpointsRead(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "n", UID: "u", Labels: map[string]string{"app": "x"},
			Annotations: map[string]string{"big": "annotation"}},
		Spec: corev1.PodSpec{
			NodeName: "node", Hostname: "h", Subdomain: "s",
			Containers: []corev1.Container{{Name: "app", Image: "img", Env: []corev1.EnvVar{{Name: "A", Value: "1"}},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 81}}}},
			InitContainers: []corev1.Container{{Name: "sidecar", RestartPolicy: &always,
				Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001, Protocol: corev1.ProtocolTCP}}}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", PodIPs: []corev1.PodIP{{IP: "10.0.0.1"}},
			Conditions:        []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue, Message: "m"}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app"}}},
	}
	obj, err := SlimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	slim := obj.(*corev1.Pod)
	if !Ready(slim) || !InEndpoints(slim, false) || !PublishHostname(slim, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n"}}) {
		t.Errorf("slimmed pod answers differently: %+v", slim)
	}
	for _, name := range []string{"http", "proxy"} {
		if _, ok := FindPort(slim, &corev1.ServicePort{TargetPort: intstr.FromString(name), Protocol: corev1.ProtocolTCP}); !ok {
			t.Errorf("named port %s lost", name)
		}
	}
	if slim.Annotations != nil || slim.Spec.Containers[0].Image != "" || len(slim.Status.ContainerStatuses) != 0 || len(slim.Status.Conditions) != 1 {
		t.Errorf("slimmed pod keeps unused fields: %+v", slim)
	}
	if _, err := SlimPod(ptr.To("not a pod")); err != nil {
		t.Errorf("non-pod objects pass through: %v", err)
	}
}
