//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; these benchmarks measure the controller that writes them.

package endpoints

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// BenchmarkDesired1000Pods measures computing and comparing the Endpoints
// of a two-port Service of 1000 pods, the work of every reconcile.
func BenchmarkDesired1000Pods(b *testing.B) {
	svc := svcWith(corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP},
		{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9100), Protocol: corev1.ProtocolTCP},
	}})
	var pods []*corev1.Pod
	for i := range 1000 {
		pods = append(pods, mkPod(podSpec{name: fmt.Sprintf("p%d", i), ip: fmt.Sprintf("10.0.%d.%d", i/256, i%256),
			ready: i%10 != 0, ports: map[string]int32{"web": 8080}}))
	}
	stored := desired(svc, pods, nil)
	for b.Loop() {
		if !upToDate(stored, desired(svc, pods, stored)) {
			b.Fatal("steady state rewritten")
		}
	}
}
