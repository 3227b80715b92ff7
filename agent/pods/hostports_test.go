package pods

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func portPod(name string, phase v1.PodPhase, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "i", Ports: ports}}},
		Status:     v1.PodStatus{Phase: phase},
	}
}

func TestHostPortClashes(t *testing.T) {
	tcp := func(ip string, port int32) hostPort { return hostPort{ip: ip, protocol: v1.ProtocolTCP, port: port} }
	for _, tc := range []struct {
		a, b hostPort
		want bool
	}{
		{tcp(anyHostIP, 80), tcp(anyHostIP, 80), true},
		{tcp(anyHostIP, 80), tcp("10.0.0.1", 80), true},
		{tcp("10.0.0.1", 80), tcp(anyHostIP, 80), true},
		{tcp("10.0.0.1", 80), tcp("10.0.0.2", 80), false},
		{tcp(anyHostIP, 80), tcp(anyHostIP, 81), false},
		{tcp(anyHostIP, 53), hostPort{ip: anyHostIP, protocol: v1.ProtocolUDP, port: 53}, false},
	} {
		if got := tc.a.clashes(tc.b); got != tc.want {
			t.Errorf("%+v clashes %+v = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestPodHostPortsCountsSidecarsOnly(t *testing.T) {
	pod := portPod("p", "", v1.ContainerPort{ContainerPort: 80, HostPort: 8080}, v1.ContainerPort{ContainerPort: 81})
	pod.Spec.InitContainers = []v1.Container{
		{Name: "init", Ports: []v1.ContainerPort{{ContainerPort: 9, HostPort: 9000}}},
		{Name: "sidecar", RestartPolicy: ptr.To(v1.ContainerRestartPolicyAlways), Ports: []v1.ContainerPort{{ContainerPort: 9, HostPort: 9001, Protocol: v1.ProtocolUDP, HostIP: "10.0.0.1"}}},
	}
	got := podHostPorts(pod)
	want := []hostPort{{ip: "10.0.0.1", protocol: v1.ProtocolUDP, port: 9001}, {ip: anyHostIP, protocol: v1.ProtocolTCP, port: 8080}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("host ports %+v, want %+v", got, want)
	}
}

// A pod whose host port another pod of the node holds fails as kubelet's
// NodePorts admission fails it; once the holder finished, a new pod for
// the port is admitted (the StatefulSet controller recreates the failed one).
func TestHostPortConflictRejects(t *testing.T) {
	port := v1.ContainerPort{ContainerPort: 80, HostPort: 21017}
	holder := portPod("holder", v1.PodPending, port)
	second := portPod("second", v1.PodPending, port)
	client := fake.NewSimpleClientset(holder, second)
	m := New(Options{Client: client, SyncInterval: time.Minute})
	m.pods[holder.UID], m.pods[second.UID] = holder, second

	if !newWorker(m, holder.UID).admit(holder) {
		t.Fatal("the first pod for a free port was refused")
	}
	w := newWorker(m, second.UID)
	if _, done := w.sync(context.Background()); done {
		t.Fatal("the worker finished a pod that exists")
	}
	got, err := client.CoreV1().Pods("ns").Get(context.Background(), "second", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.PodFailed || got.Status.Reason != "NodePorts" ||
		got.Status.Message != "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports" {
		t.Fatalf("status %+v", got.Status)
	}
	// The refusal stands for this worker even once the port is free.
	m.releaseHostPorts(holder.UID)
	if w.admit(second) {
		t.Fatal("a refused pod was admitted on a later sync")
	}

	// A replacement pod is admitted once the holder is gone.
	third := portPod("third", v1.PodPending, port)
	m.pods[third.UID] = third
	delete(m.pods, second.UID)
	if !newWorker(m, third.UID).admit(third) {
		t.Fatal("a pod for a freed port was refused")
	}
}

// After an agent restart, a pod the API shows running holds its port even
// before its worker ran; a finished one does not.
func TestHostPortHeldByRunningPod(t *testing.T) {
	port := v1.ContainerPort{ContainerPort: 80, HostPort: 21018}
	running := portPod("running", v1.PodRunning, port)
	done := portPod("done", v1.PodSucceeded, v1.ContainerPort{ContainerPort: 80, HostPort: 21019})
	m := New(Options{Client: fake.NewSimpleClientset(), SyncInterval: time.Minute})
	m.pods[running.UID], m.pods[done.UID] = running, done

	if m.takeHostPorts(portPod("new", v1.PodPending, port)) {
		t.Fatal("a pod was admitted onto a port a running pod holds")
	}
	if !m.takeHostPorts(portPod("other", v1.PodPending, v1.ContainerPort{ContainerPort: 80, HostPort: 21019})) {
		t.Fatal("a finished pod's port was still held")
	}
}
