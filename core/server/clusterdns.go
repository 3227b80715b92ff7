package server

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// clusterDNSService is kube-system/kube-dns, the Service that holds the
// cluster DNS address. Every node agent answers DNS on that address itself
// (agent/dns; its service proxy leaves the address alone), so the Service
// has no selector and no endpoints: it reserves the address, so that no
// other Service is allocated it, and shows where cluster DNS lives, as
// `kubectl get svc -n kube-system kube-dns` does on other distributions.
func clusterDNSService(ip string) *v1.Service {
	return &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: map[string]string{
			"k8s-app": "kube-dns", "kubernetes.io/name": "KeelsonDNS", "kubernetes.io/cluster-service": "true",
		}},
		Spec: v1.ServiceSpec{
			ClusterIP: ip,
			Ports: []v1.ServicePort{
				{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Protocol: v1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
			},
		},
	}
}

// ensureClusterDNSService creates the kube-dns Service unless it exists. An
// existing one is left as it is (an operator may run a DNS server of their
// own behind it).
func ensureClusterDNSService(ctx context.Context, c kubernetes.Interface, ip string) error {
	svc := clusterDNSService(ip)
	services := c.CoreV1().Services(svc.Namespace)
	if _, err := services.Get(ctx, svc.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("service kube-system/kube-dns: %w", err)
		}
		return nil
	}
	if _, err := services.Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		if apierrors.IsInvalid(err) {
			return fmt.Errorf("service kube-system/kube-dns at the cluster DNS address %s (another Service holds it; delete that Service or choose another address with --cluster-dns): %w", ip, err)
		}
		return fmt.Errorf("service kube-system/kube-dns: %w", err)
	}
	return nil
}
