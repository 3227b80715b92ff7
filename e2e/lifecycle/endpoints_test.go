//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; these tests check what the endpoints controllers write there.

package lifecycle

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// node registers a Node object (no agent runs it) in zone.
func (c *cluster) node(t *testing.T, name, zone string) {
	t.Helper()
	_, err := c.kube.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{corev1.LabelTopologyZone: zone},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating node %s: %v", name, err)
	}
}

// backend is a pod the test runs by hand: placed on a node, given an IP,
// ready or not.
type backend struct {
	name, node, ip string
	ready          bool
	ports          []corev1.ContainerPort
	hostname       string
	subdomain      string
}

func (c *cluster) runBackend(t *testing.T, ns string, labels map[string]string, b backend) {
	t.Helper()
	ctx := context.Background()
	pods := c.kube.CoreV1().Pods(ns)
	_, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: b.name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName: b.node, Hostname: b.hostname, Subdomain: b.subdomain,
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app", Ports: b.ports}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", b.name, err)
	}
	c.setReady(t, ns, b.name, b.ip, b.ready)
}

// setReady reports the pod running at ip, ready or not, as its node's
// agent would.
func (c *cluster) setReady(t *testing.T, ns, name, ip string, ready bool) {
	t.Helper()
	ctx := context.Background()
	pods := c.kube.CoreV1().Pods(ns)
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting status of pod %s: %v", name, err)
	}
}

func namedPort(name string, port int32) []corev1.ContainerPort {
	return []corev1.ContainerPort{{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}}
}

// subsetSummary renders Endpoints subsets as "ports -> ready | notReady"
// lines, sorted, so tests compare what a user reads, not the layout.
func subsetSummary(subsets []corev1.EndpointSubset) []string {
	var out []string
	for _, s := range subsets {
		var ports, ready, notReady []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", p.Name, p.Port))
		}
		for _, a := range s.Addresses {
			ready = append(ready, a.IP+hostSuffix(a.Hostname))
		}
		for _, a := range s.NotReadyAddresses {
			notReady = append(notReady, a.IP+hostSuffix(a.Hostname))
		}
		slices.Sort(ports)
		slices.Sort(ready)
		slices.Sort(notReady)
		out = append(out, strings.Join(ports, ",")+" -> "+strings.Join(ready, ",")+" | "+strings.Join(notReady, ","))
	}
	slices.Sort(out)
	return out
}

func hostSuffix(h string) string {
	if h == "" {
		return ""
	}
	return "(" + h + ")"
}

// sliceSummary renders a Service's EndpointSlices as "ports -> address
// ready/serving/terminating zone hostname" lines, sorted.
func sliceSummary(list []discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range list {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, fmt.Sprintf("%s=%d", deref(p.Name), deref(p.Port)))
		}
		slices.Sort(ports)
		for _, e := range s.Endpoints {
			out = append(out, fmt.Sprintf("%s -> %s %v/%v/%v %s%s", strings.Join(ports, ","), strings.Join(e.Addresses, ","),
				deref(e.Conditions.Ready), deref(e.Conditions.Serving), deref(e.Conditions.Terminating), deref(e.Zone), hostSuffix(deref(e.Hostname))))
		}
	}
	slices.Sort(out)
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (c *cluster) endpointsAre(ctx context.Context, ns, name string, want []string) func() error {
	return func() error {
		ep, err := c.kube.CoreV1().Endpoints(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := subsetSummary(ep.Subsets); !slices.Equal(got, want) {
			return fmt.Errorf("endpoints\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		return nil
	}
}

func (c *cluster) slicesAre(ctx context.Context, ns, service string, want []string) func() error {
	return func() error {
		list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err != nil {
			return err
		}
		if got := sliceSummary(list.Items); !slices.Equal(got, want) {
			return fmt.Errorf("endpointslices\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		return nil
	}
}

func (c *cluster) testEndpointsMultiPort(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "multiport")
	c.node(t, "node-a", "zone-a")
	c.node(t, "node-b", "zone-b")
	labels := map[string]string{"app": "web"}
	_, err := c.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"tier": "frontend"}},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http-web")},
			{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9100)},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The named target port resolves to a different number in web-2, and
	// not at all in web-4, which serves only the numeric port.
	for _, b := range []backend{
		{name: "web-1", node: "node-a", ip: "10.244.1.11", ready: true, ports: namedPort("http-web", 8080)},
		{name: "web-2", node: "node-b", ip: "10.244.1.12", ready: true, ports: namedPort("http-web", 8081)},
		{name: "web-3", node: "node-a", ip: "10.244.1.13", ready: false, ports: namedPort("http-web", 8080)},
		{name: "web-4", node: "node-b", ip: "10.244.1.14", ready: true},
	} {
		c.runBackend(t, ns, labels, b)
	}
	eventually(t, "endpoints of a multi-port service", c.endpointsAre(ctx, ns, "web", []string{
		"http=8080,metrics=9100 -> 10.244.1.11 | 10.244.1.13",
		"http=8081,metrics=9100 -> 10.244.1.12 | ",
		"metrics=9100 -> 10.244.1.14 | ",
	}))
	eventually(t, "endpointslices of a multi-port service", c.slicesAre(ctx, ns, "web", []string{
		"http=8080,metrics=9100 -> 10.244.1.11 true/true/false zone-a",
		"http=8080,metrics=9100 -> 10.244.1.13 false/false/false zone-a",
		"http=8081,metrics=9100 -> 10.244.1.12 true/true/false zone-b",
		"metrics=9100 -> 10.244.1.14 true/true/false zone-b",
	}))
	ep, err := c.kube.CoreV1().Endpoints(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Labels["tier"] != "frontend" || ep.Labels["endpoints.kubernetes.io/managed-by"] != "endpoint-controller" {
		t.Errorf("endpoints labels %v: want the service's labels and managed-by endpoint-controller", ep.Labels)
	}

	// Readiness changes follow. A deleted pod on a node terminates until
	// its node's agent confirms it stopped: Endpoints drop it at once,
	// EndpointSlices show it terminating (still serving) until it is gone.
	c.setReady(t, ns, "web-3", "10.244.1.13", true)
	if err := c.kube.CoreV1().Pods(ns).Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "endpoints after a pod became ready and another is terminating", c.endpointsAre(ctx, ns, "web", []string{
		"http=8080,metrics=9100 -> 10.244.1.13 | ",
		"http=8081,metrics=9100 -> 10.244.1.12 | ",
		"metrics=9100 -> 10.244.1.14 | ",
	}))
	eventually(t, "endpointslices after a pod became ready and another is terminating", c.slicesAre(ctx, ns, "web", []string{
		"http=8080,metrics=9100 -> 10.244.1.11 false/true/true zone-a",
		"http=8080,metrics=9100 -> 10.244.1.13 true/true/false zone-a",
		"http=8081,metrics=9100 -> 10.244.1.12 true/true/false zone-b",
		"metrics=9100 -> 10.244.1.14 true/true/false zone-b",
	}))
	// The agent's confirmation: the pod object goes.
	if err := c.kube.CoreV1().Pods(ns).Delete(ctx, "web-1", metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "endpointslices after the pod is gone", c.slicesAre(ctx, ns, "web", []string{
		"http=8080,metrics=9100 -> 10.244.1.13 true/true/false zone-a",
		"http=8081,metrics=9100 -> 10.244.1.12 true/true/false zone-b",
		"metrics=9100 -> 10.244.1.14 true/true/false zone-b",
	}))
	if out := c.kubectl(t, "-n", ns, "describe", "service", "web"); !strings.Contains(out, "10.244.1.13:8080") {
		t.Errorf("kubectl describe service does not list the endpoint:\n%s", out)
	}
}

func (c *cluster) testHeadlessPublishNotReady(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "headless")
	c.node(t, "node-a", "zone-a")
	labels := map[string]string{"app": "db"}
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Selector: labels, PublishNotReadyAddresses: true,
			Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}},
		// Headless services may have no ports at all.
		{ObjectMeta: metav1.ObjectMeta{Name: "peers"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels}},
	} {
		if _, err := c.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.runBackend(t, ns, labels, backend{name: "db-0", node: "node-a", ip: "10.244.2.10", hostname: "db-0", subdomain: "db"})

	eventually(t, "unready pod published by publishNotReadyAddresses, with its hostname",
		c.endpointsAre(ctx, ns, "db", []string{"pg=5432 -> 10.244.2.10(db-0) | "}))
	eventually(t, "slice endpoint ready but not serving",
		c.slicesAre(ctx, ns, "db", []string{"pg=5432 -> 10.244.2.10 true/false/false zone-a(db-0)"}))
	eventually(t, "portless headless service", c.endpointsAre(ctx, ns, "peers", []string{" ->  | 10.244.2.10"}))
	for _, name := range []string{"db", "peers"} {
		ep, err := c.kube.CoreV1().Endpoints(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok {
			t.Errorf("endpoints %s lack the %s label: %v", name, corev1.IsHeadlessService, ep.Labels)
		}
	}
}

// testManualEndpointsMirrored runs the seed's example of a Service
// without a selector and hand-written Endpoints.
func (c *cluster) testManualEndpointsMirrored(t *testing.T) {
	ctx := context.Background()
	ns := c.newNamespace(t, "manual")
	c.kubectlIn(t, `kind: Service
apiVersion: v1
metadata:
  name: my-service
spec:
  ports:
  - protocol: TCP
    port: 80
    targetPort: 9376
---
kind: Endpoints
apiVersion: v1
metadata:
  name: my-service
subsets:
  - addresses:
      - ip: 1.2.3.4
    ports:
      - port: 9376
`, "-n", ns, "apply", "-f", "-")
	before, err := c.kube.CoreV1().Endpoints(ns).Get(ctx, "my-service", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mirrored := func(want []string) func() error {
		return func() error {
			list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
				LabelSelector: discoveryv1.LabelServiceName + "=my-service"})
			if err != nil {
				return err
			}
			for _, s := range list.Items {
				if s.Labels[discoveryv1.LabelManagedBy] != "endpointslicemirroring-controller.k8s.io" ||
					len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Endpoints" || s.OwnerReferences[0].UID != before.UID {
					return fmt.Errorf("slice %s: labels %v owners %v: want mirrored, owned by the Endpoints", s.Name, s.Labels, s.OwnerReferences)
				}
			}
			if got := sliceSummary(list.Items); !slices.Equal(got, want) {
				return fmt.Errorf("mirrored slices %q, want %q", got, want)
			}
			return nil
		}
	}
	eventually(t, "manual endpoints mirrored", mirrored([]string{"=9376 -> 1.2.3.4 true/false/false "}))

	// A Service with a selector gets its Endpoints written meanwhile; the
	// hand-written ones are left exactly as they were.
	c.node(t, "node-a", "zone-a")
	c.runBackend(t, ns, map[string]string{"app": "probe"}, backend{name: "probe", node: "node-a", ip: "10.244.3.10", ready: true})
	if _, err := c.kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "probe"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "selector service's endpoints", c.endpointsAre(ctx, ns, "probe", []string{"=80 -> 10.244.3.10 | "}))
	after, err := c.kube.CoreV1().Endpoints(ns).Get(ctx, "my-service", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion || !maps.Equal(after.Labels, before.Labels) {
		t.Errorf("hand-written endpoints were modified: resourceVersion %s -> %s, labels %v", before.ResourceVersion, after.ResourceVersion, after.Labels)
	}

	// Edits to the hand-written Endpoints are mirrored; deleting them
	// removes the mirror.
	c.kubectl(t, "-n", ns, "patch", "endpoints", "my-service", "--type=json", "-p",
		`[{"op":"add","path":"/subsets/0/notReadyAddresses","value":[{"ip":"5.6.7.8"}]}]`)
	eventually(t, "edit mirrored", mirrored([]string{"=9376 -> 1.2.3.4 true/false/false ", "=9376 -> 5.6.7.8 false/false/false "}))
	c.kubectl(t, "-n", ns, "delete", "endpoints", "my-service")
	eventually(t, "mirror removed with its endpoints", mirrored(nil))
}

// testUnknownNodeEvent: a pod on a node the cluster does not know is left
// out of the slices, and the Service's events say why.
func (c *cluster) testUnknownNodeEvent(t *testing.T) {
	ns := c.newNamespace(t, "ghostnode")
	labels := map[string]string{"app": "lost"}
	c.kubectlIn(t, "apiVersion: v1\nkind: Service\nmetadata: {name: lost}\nspec:\n  selector: {app: lost}\n  ports: [{port: 80}]\n", "-n", ns, "apply", "-f", "-")
	c.runBackend(t, ns, labels, backend{name: "lost-0", node: "ghost", ip: "10.244.4.10", ready: true})
	eventually(t, "warning event on the service", func() error {
		out := c.kubectl(t, "-n", ns, "describe", "service", "lost")
		if !strings.Contains(out, "FailedToUpdateEndpointSlices") || !strings.Contains(out, `node "ghost" not found`) {
			return fmt.Errorf("kubectl describe service:\n%s", out)
		}
		return nil
	})
}
