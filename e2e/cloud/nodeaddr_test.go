package cloud

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
)

// agentNames are the nodes; "client" is a namespace on the same bridge
// that is no node.
var agentNames = []string{"a1", "a2"}

// TestLoadBalancerNodeAddresses: with no pool configured, a LoadBalancer
// Service gets the ready nodes' addresses, and a client on the bridge that
// is not a node reaches the backend pod through each of them; a second
// Service on the same port waits until the first is deleted (its
// addresses and port are released), and a Service of another
// loadBalancerClass is left pending.
func TestLoadBalancerNodeAddresses(t *testing.T) {
	nodeagent.Require(t)
	ha.RequireNetns(t)
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	// The built-in ingress's own LoadBalancer Service would hold port 80
	// of the node addresses this test gives its Services.
	cl := ha.NewCluster(t, ha.Options{Servers: 1, APIServer: true, Hosts: append([]string{"client"}, agentNames...),
		Args: []string{"--cluster-cidr", cidr, "--disable-plugin", "ingress"}})
	srv := cl.Servers[0]
	c := srv.Clientset(t)
	tokenFile := cl.AgentTokenFile(t)
	var nodeIPs []string
	for _, name := range agentNames {
		h := cl.Net.Host(name)
		nodeagent.New(t, nodeagent.Options{Name: name, NetNS: h.NS, Args: []string{
			"--server", "https://" + net.JoinHostPort(srv.IP, "6443"),
			"--token-file", tokenFile,
			"--node-ip", h.IP,
			"--kubelet-address", h.IP,
			"--cluster-cidr", cidr,
		}}).Start(t)
		nodeIPs = append(nodeIPs, h.IP)
	}
	for _, name := range agentNames {
		waitReady(t, c, name)
	}
	ns := "default"
	harness.Eventually(t, waitTimeout, "the default ServiceAccount", func() (bool, string) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})

	createService(t, c, ns, lbService("other", func(s *v1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") }))
	createWeb(t, c, ns)
	createService(t, c, ns, lbService("web"))
	web := waitIngress(t, c, ns, "web", nodeIPs...)

	client := cl.Net.Host("client")
	for _, ip := range ingressIPs(web) {
		url := "http://" + net.JoinHostPort(ip, "80") + "/"
		harness.Eventually(t, waitTimeout, "the client reaches the backend through "+url, func() (bool, string) {
			out, err := client.Exec("curl", "-s", "--max-time", "5", url)
			return err == nil && strings.Contains(out, "served by web-"), fmt.Sprintf("%v: %s", err, out)
		})
	}

	// The node addresses serve port 80 for "web": another Service on the
	// same port must wait for it.
	createService(t, c, ns, lbService("web2"))
	waitEvent(t, c, ns, "web2", "port 80/TCP on")
	deleteService(t, c, ns, "web")
	waitIngress(t, c, ns, "web2", nodeIPs...)
	requirePending(t, c, ns, "other")
}

func waitReady(t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	harness.Eventually(t, waitTimeout, "node "+name+" is Ready with a pod CIDR", func() (bool, string) {
		n, err := c.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeReady {
				return cond.Status == v1.ConditionTrue && n.Spec.PodCIDR != "", cond.Message
			}
		}
		return false, "no Ready condition"
	})
}

// createWeb runs one busybox httpd pod labelled app=web answering with its
// name.
func createWeb(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Replicas: ptr.To[int32](1),
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{Name: "web", Image: nodeagent.BusyboxImage,
				Command:        []string{"sh", "-c", `mkdir -p /www && echo "served by $(hostname)" > /www/index.html && exec httpd -f -p 80 -h /www`},
				Ports:          []v1.ContainerPort{{ContainerPort: 80}},
				ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(80)}}, PeriodSeconds: 1},
			}},
		}},
	}}
	if _, err := c.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
