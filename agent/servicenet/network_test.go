package servicenet

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	networking "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/agent/netpol"
	"github.com/keelson/keelson/agent/proxy"
	"github.com/keelson/keelson/e2e/harness"
)

const (
	clusterDNS  = "10.43.0.10"
	clusterCIDR = "10.244.0.0/16"
	agentEnv    = "KEELSON_NETWORK_TEST_AGENT"
)

// agentConfig is what the test hands an agent process.
type agentConfig struct {
	Kubeconfig, NodeName, ResolvConf string
}

// TestAgentProcess is not a test: it is the node agent's service
// networking, run by TestServiceNetworking inside a node's network
// namespace (the test binary re-executed), until SIGTERM.
func TestAgentProcess(t *testing.T) {
	raw := os.Getenv(agentEnv)
	if raw == "" {
		t.Skip("helper process of TestServiceNetworking")
	}
	var ac agentConfig
	if err := json.Unmarshal([]byte(raw), &ac); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", ac.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	n, err := New(client, Config{
		NodeName: ac.NodeName, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix(clusterCIDR)},
		ClusterDNS: []netip.Addr{netip.MustParseAddr(clusterDNS)}, ResolvConf: ac.ResolvConf,
		MinSyncPeriod: 200 * time.Millisecond, ProxyMode: os.Getenv("KEELSON_PROXY_MODE"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// agent is a running agent process.
type agent struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startAgent(t *testing.T, node *tbNode, kubeconfig string) *agent {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf") // no nameserver: nothing is forwarded off the machine
	if err := os.WriteFile(resolv, []byte("search example.invalid\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(agentConfig{Kubeconfig: kubeconfig, NodeName: node.name, ResolvConf: resolv})
	a := &agent{log: filepath.Join(dir, "agent.log"), done: make(chan error, 1)}
	f, err := os.Create(a.log)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command("ip", "netns", "exec", node.ns, os.Args[0], "-test.run=^TestAgentProcess$", "-test.v")
	a.cmd.Env = append(os.Environ(), agentEnv+"="+string(raw))
	a.cmd.Stdout, a.cmd.Stderr = f, f
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		a.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(a.log)
			t.Logf("agent %s log:\n%s", node.name, tail(string(b), 60))
		}
	})
	return a
}

func (a *agent) stop(t *testing.T) {
	if a.cmd.ProcessState != nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		t.Errorf("agent did not stop on SIGTERM; killing it")
		_ = a.cmd.Process.Kill()
		<-a.done
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cluster is the API side of the test: objects made through the API.
type cluster struct {
	t  *testing.T
	c  kubernetes.Interface
	tb *testbed
}

func (cl *cluster) ctx() context.Context { return context.Background() }

func (cl *cluster) namespace(name string, labels map[string]string) {
	cl.t.Helper()
	if name != "default" {
		if _, err := cl.c.CoreV1().Namespaces().Create(cl.ctx(), &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			cl.t.Fatal(err)
		}
	}
	// No serviceaccount controller runs here; pods need the default one.
	_, err := cl.c.CoreV1().ServiceAccounts(name).Create(cl.ctx(), &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		cl.t.Fatal(err)
	}
}

func (cl *cluster) node(n *tbNode) {
	cl.t.Helper()
	node, err := cl.c.CoreV1().Nodes().Create(cl.ctx(), &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
		Spec: v1.NodeSpec{PodCIDR: n.podCIDR, PodCIDRs: []string{n.podCIDR}}}, metav1.CreateOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	node.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: n.ip}, {Type: v1.NodeHostName, Address: n.name}}
	if _, err := cl.c.CoreV1().Nodes().UpdateStatus(cl.ctx(), node, metav1.UpdateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
}

// pod registers a testbed pod in the API as a running, ready pod.
func (cl *cluster) pod(p *tbPod, namespace string, labels map[string]string) {
	cl.t.Helper()
	pod, err := cl.c.CoreV1().Pods(namespace).Create(cl.ctx(), &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: labels},
		Spec: v1.PodSpec{NodeName: p.node.name, Containers: []v1.Container{{Name: "app", Image: "busybox",
			Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	pod.Status = v1.PodStatus{Phase: v1.PodRunning, PodIP: p.ip, PodIPs: []v1.PodIP{{IP: p.ip}}, HostIP: p.node.ip,
		Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}}
	if _, err := cl.c.CoreV1().Pods(namespace).UpdateStatus(cl.ctx(), pod, metav1.UpdateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *cluster) service(s *v1.Service) *v1.Service {
	cl.t.Helper()
	if s.Namespace == "" {
		s.Namespace = "default"
	}
	out, err := cl.c.CoreV1().Services(s.Namespace).Create(cl.ctx(), s, metav1.CreateOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	return out
}

// endpoints writes the service's EndpointSlice (as the endpointslice
// controller would) with the given pods as ready endpoints.
func (cl *cluster) endpoints(svc *v1.Service, port int32, proto v1.Protocol, portName string, pods ...*tbPod) {
	cl.t.Helper()
	s := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name + "-test", Namespace: svc.Namespace,
			Labels: map[string]string{discovery.LabelServiceName: svc.Name, discovery.LabelManagedBy: "keelson-network-test"}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(proto), Port: ptr.To(port)}},
	}
	for _, p := range pods {
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{Addresses: []string{p.ip}, NodeName: ptr.To(p.node.name),
			Conditions: discovery.EndpointConditions{Ready: ptr.To(true)}, Hostname: ptr.To(p.name)})
	}
	slices := cl.c.DiscoveryV1().EndpointSlices(svc.Namespace)
	if old, err := slices.Get(cl.ctx(), s.Name, metav1.GetOptions{}); err == nil {
		s.ResourceVersion = old.ResourceVersion
		_, err = slices.Update(cl.ctx(), s, metav1.UpdateOptions{})
		if err != nil {
			cl.t.Fatal(err)
		}
		return
	}
	if _, err := slices.Create(cl.ctx(), s, metav1.CreateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
}

func (cl *cluster) policy(namespace string, p *networking.NetworkPolicy) func() {
	cl.t.Helper()
	p.Namespace = namespace
	if _, err := cl.c.NetworkingV1().NetworkPolicies(namespace).Create(cl.ctx(), p, metav1.CreateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
	return func() {
		if err := cl.c.NetworkingV1().NetworkPolicies(namespace).Delete(cl.ctx(), p.Name, metav1.DeleteOptions{}); err != nil {
			cl.t.Fatal(err)
		}
	}
}

func httpPort(port int32, target int) []v1.ServicePort {
	return []v1.ServicePort{{Protocol: v1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt(target)}}
}

// lookup asks the cluster DNS from inside ns.
func lookup(ns, name string, qtype uint16) (*dns.Msg, error) {
	c, err := dial(ns, "udp", net.JoinHostPort(clusterDNS, "53"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.RecursionDesired = true
	client := &dns.Client{Timeout: 3 * time.Second}
	resp, _, err := client.ExchangeWithConn(m, &dns.Conn{Conn: c})
	return resp, err
}

func answerIPs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// reach expects a connection from ns to addr to be allowed (answered by
// one of the pods named in want, or any pod when want is empty) or denied.
func reach(t *testing.T, from, addr string, allowed bool, want ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s -> %s allowed=%v", from, addr, allowed), func() error {
		body, err := get(from, addr)
		switch {
		case allowed && err != nil:
			return err
		case allowed && len(want) > 0 && !hasAnyPrefix(body, want):
			return fmt.Errorf("answered by %q, want one of %v", body, want)
		case !allowed && err == nil:
			return fmt.Errorf("connection allowed (answer %q)", body)
		}
		return nil
	})
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p+" ") {
			return true
		}
	}
	return false
}

// TestServiceNetworking runs the service networking of two nodes (agent
// processes in node namespaces) against a real keelson API server and
// checks real traffic between pod namespaces: routes across nodes, cluster
// IPs, DNS, node ports, affinity, endpoint removal, UDP, NetworkPolicies,
// and cleanup.
func TestServiceNetworking(t *testing.T) {
	requireRoot(t)
	tb := newTestbed(t, 2)
	n1, n2 := tb.nodes[0], tb.nodes[1]
	srv := harness.StartServer(t, harness.ServerOptions{IP: tb.subnet + ".1", NodeName: "api"})
	cl := &cluster{t: t, c: srv.Clientset(t), tb: tb}

	cl.namespace("default", nil)
	cl.namespace("myproject", map[string]string{"project": "myproject"})
	cl.namespace("alice", map[string]string{"user": "alice"})
	cl.node(n1)
	cl.node(n2)
	web1, web2 := tb.addPod(n1, "web-1"), tb.addPod(n2, "web-2")
	client, other := tb.addPod(n1, "client"), tb.addPod(n2, "other")
	proj := tb.addPod(n2, "proj")
	aliceClient, aliceServer := tb.addPod(n1, "alice-client"), tb.addPod(n2, "alice-server")
	for _, p := range []struct {
		pod    *tbPod
		ns     string
		labels map[string]string
	}{
		{web1, "default", map[string]string{"run": "my-nginx", "role": "db"}},
		{web2, "default", map[string]string{"run": "my-nginx", "role": "db"}},
		{client, "default", map[string]string{"role": "frontend"}},
		{other, "default", map[string]string{"role": "other"}},
		{proj, "myproject", map[string]string{"app": "x"}},
		{aliceClient, "alice", map[string]string{"role": "client"}},
		{aliceServer, "alice", map[string]string{"role": "server"}},
	} {
		cl.pod(p.pod, p.ns, p.labels)
		p.pod.serveHTTP(t, 8080)
	}
	web1.serveUDP(t, 5353)
	web2.serveUDP(t, 5353)

	agents := []*agent{startAgent(t, n1, srv.Kubeconfig()), startAgent(t, n2, srv.Kubeconfig())}

	t.Run("pods reach pods on other nodes without NAT", func(t *testing.T) {
		reach(t, client.ns, web2.ip+":8080", true, "web-2")
		body, err := get(client.ns, web2.ip+":8080")
		if err != nil || body != "web-2 "+client.ip {
			t.Errorf("web-2 saw %q (%v), want the client's own address %s", body, err, client.ip)
		}
	})

	nginx := cl.service(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "my-nginx", Labels: map[string]string{"run": "my-nginx"}},
		Spec: v1.ServiceSpec{Selector: map[string]string{"run": "my-nginx"}, Ports: httpPort(80, 8080)}})
	cl.endpoints(nginx, 8080, v1.ProtocolTCP, "", web1, web2)
	vip := nginx.Spec.ClusterIP + ":80"

	t.Run("cluster IP reaches every endpoint from a third pod", func(t *testing.T) {
		seen := map[string]bool{}
		eventually(t, "both endpoints answer through "+vip, func() error {
			body, err := get(client.ns, vip)
			if err != nil {
				return err
			}
			f := strings.Fields(body)
			if len(f) != 2 || f[1] != client.ip {
				return fmt.Errorf("answer %q: the endpoint must see the client pod's address", body)
			}
			seen[f[0]] = true
			if !seen["web-1"] || !seen["web-2"] {
				return fmt.Errorf("answered by %v so far", seen)
			}
			return nil
		})
	})

	t.Run("cluster DNS", func(t *testing.T) {
		eventually(t, "my-nginx resolves", func() error {
			m, err := lookup(client.ns, "my-nginx.default.svc.cluster.local.", dns.TypeA)
			if err != nil {
				return err
			}
			if ips := answerIPs(m); len(ips) != 1 || ips[0] != nginx.Spec.ClusterIP {
				return fmt.Errorf("answer %v, want %s", ips, nginx.Spec.ClusterIP)
			}
			return nil
		})
		// Fetch the service by its name, resolved through the cluster DNS.
		m, err := lookup(client.ns, "my-nginx.default.svc.cluster.local.", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if body, err := get(client.ns, answerIPs(m)[0]+":80"); err != nil || !hasAnyPrefix(body, []string{"web-1", "web-2"}) {
			t.Errorf("fetching my-nginx by name: %q, %v", body, err)
		}
		headless := cl.service(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-headless"},
			Spec: v1.ServiceSpec{ClusterIP: v1.ClusterIPNone, Selector: map[string]string{"run": "my-nginx"}, Ports: httpPort(8080, 8080)}})
		cl.endpoints(headless, 8080, v1.ProtocolTCP, "", web1, web2)
		eventually(t, "the headless service resolves to the pods", func() error {
			m, err := lookup(other.ns, "web-headless.default.svc.cluster.local.", dns.TypeA)
			if err != nil {
				return err
			}
			if ips := strings.Join(answerIPs(m), ","); ips != web1.ip+","+web2.ip {
				return fmt.Errorf("answer %s", ips)
			}
			return nil
		})
		m, err = lookup(other.ns, "web-1.web-headless.default.svc.cluster.local.", dns.TypeA)
		if err != nil || strings.Join(answerIPs(m), ",") != web1.ip {
			t.Errorf("hostname record: %v %v", m, err)
		}
		// A name outside the cluster, and no upstream nameserver on the
		// node: a clean failure, not a timeout.
		if m, err := lookup(client.ns, "example.com.", dns.TypeA); err != nil || m.Rcode != dns.RcodeServerFailure {
			t.Errorf("example.com: %v %v, want SERVFAIL", m, err)
		}
	})

	t.Run("node port on every node", func(t *testing.T) {
		np := cl.service(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "my-nginx-np"},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeNodePort, Ports: httpPort(80, 8080)}})
		cl.endpoints(np, 8080, v1.ProtocolTCP, "", web1, web2)
		port := np.Spec.Ports[0].NodePort
		for _, n := range tb.nodes {
			reach(t, "", fmt.Sprintf("%s:%d", n.ip, port), true, "web-1", "web-2")
		}
	})

	t.Run("ClientIP affinity keeps a client on one pod", func(t *testing.T) {
		sticky := cl.service(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "sticky"},
			Spec: v1.ServiceSpec{SessionAffinity: v1.ServiceAffinityClientIP, Ports: httpPort(80, 8080)}})
		cl.endpoints(sticky, 8080, v1.ProtocolTCP, "", web1, web2)
		addr := sticky.Spec.ClusterIP + ":80"
		reach(t, client.ns, addr, true)
		first, _ := get(client.ns, addr)
		for range 20 {
			if body, err := get(client.ns, addr); err != nil || body != first {
				t.Fatalf("answer %q (%v) after %q: the client moved", body, err, first)
			}
		}
	})

	t.Run("a removed endpoint stops getting traffic", func(t *testing.T) {
		cl.endpoints(nginx, 8080, v1.ProtocolTCP, "", web1)
		eventually(t, "only web-1 answers", func() error {
			for range 20 {
				body, err := get(client.ns, vip)
				if err != nil {
					return err
				}
				if !strings.HasPrefix(body, "web-1 ") {
					return fmt.Errorf("answered by %q", body)
				}
			}
			return nil
		})
		cl.endpoints(nginx, 8080, v1.ProtocolTCP, "", web1, web2)
	})

	t.Run("UDP service", func(t *testing.T) {
		udp := cl.service(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo"},
			Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "echo", Protocol: v1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt(5353)}}}})
		cl.endpoints(udp, 5353, v1.ProtocolUDP, "echo", web2)
		addr := udp.Spec.ClusterIP + ":53"
		eventually(t, "UDP through the cluster IP", func() error {
			got, err := udpAsk(client.ns, addr)
			if err == nil && got != "web-2" {
				err = fmt.Errorf("answered by %q", got)
			}
			return err
		})
		cl.endpoints(udp, 5353, v1.ProtocolUDP, "echo", web1)
		eventually(t, "UDP moves to the new endpoint", func() error {
			got, err := udpAsk(client.ns, addr)
			if err == nil && got != "web-1" {
				err = fmt.Errorf("answered by %q", got)
			}
			return err
		})
	})

	t.Run("network policies", func(t *testing.T) { testPolicies(t, cl, tb) })

	t.Run("the proxy and the policies run in the selected mode", func(t *testing.T) {
		nftMode := os.Getenv("KEELSON_PROXY_MODE") != "iptables" // nftables by default
		for _, n := range tb.nodes {
			save := run(t, "ip", "netns", "exec", n.ns, "iptables-save")
			tables := strings.Split(run(t, "ip", "netns", "exec", n.ns, "nft", "list", "tables"), "\n")
			ipt, nft := strings.Contains(save, "KEELSON-SERVICES"), slices.Contains(tables, "table ip "+proxy.NFTTableName)
			if ipt == nftMode || nft != nftMode {
				t.Errorf("%s: proxy chains in iptables %v, nftables table %v; KEELSON_PROXY_MODE=%q", n.name, ipt, nft, os.Getenv("KEELSON_PROXY_MODE"))
			}
			ipt, nft = strings.Contains(save, "KEELSON-NETPOL"), slices.Contains(tables, "table ip "+netpol.NFTTableName)
			if ipt == nftMode || nft != nftMode {
				t.Errorf("%s: policy chains in iptables %v, nftables table %v; KEELSON_PROXY_MODE=%q", n.name, ipt, nft, os.Getenv("KEELSON_PROXY_MODE"))
			}
		}
	})

	t.Run("everything is removed on shutdown", func(t *testing.T) {
		for _, a := range agents {
			a.stop(t)
		}
		for _, n := range tb.nodes {
			if out := run(t, "ip", "netns", "exec", n.ns, "iptables-save"); strings.Contains(out, "KEELSON") {
				t.Errorf("%s keeps rules:\n%s", n.name, out)
			}
			if out := run(t, "ip", "netns", "exec", n.ns, "nft", "list", "tables"); strings.Contains(out, "keelson") {
				t.Errorf("%s keeps an nftables table (the proxy's or the policies'):\n%s", n.name, out)
			}
			if out := run(t, "ip", "-n", n.ns, "route", "show", "proto", "75"); strings.TrimSpace(out) != "" {
				t.Errorf("%s keeps routes:\n%s", n.name, out)
			}
			if out := run(t, "ip", "-n", n.ns, "addr", "show", "dev", "lo"); strings.Contains(out, clusterDNS) {
				t.Errorf("%s keeps the cluster DNS address:\n%s", n.name, out)
			}
		}
	})
}

// testPolicies applies the NetworkPolicy examples of the concepts notes
// and checks the traffic each allows and denies. Pods: web-1 (n1) and
// web-2 (n2) role=db, client (n1) role=frontend, other (n2) role=other, all
// in default; proj (n2) in myproject; alice-client (n1) and alice-server
// (n2) in alice.
func testPolicies(t *testing.T, cl *cluster, tb *testbed) {
	pod := func(name string) *tbPod {
		for _, p := range tb.pods {
			if p.name == name {
				return p
			}
		}
		t.Fatalf("no pod %s", name)
		return nil
	}
	web1, web2, client, other, proj := pod("web-1"), pod("web-2"), pod("client"), pod("other"), pod("proj")
	aliceClient, aliceServer := pod("alice-client"), pod("alice-server")
	to := func(p *tbPod) string { return p.ip + ":8080" }
	all := metav1.LabelSelector{}
	sel := func(m map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: m} }
	types := func(ts ...networking.PolicyType) []networking.PolicyType { return ts }
	in, eg := networking.PolicyTypeIngress, networking.PolicyTypeEgress
	np := func(name string, spec networking.NetworkPolicySpec) *networking.NetworkPolicy {
		return &networking.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}

	t.Run("default deny all ingress, then allow all ingress", func(t *testing.T) {
		del := cl.policy("default", np("default-deny", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: types(in)}))
		reach(t, client.ns, to(web1), false) // same node
		reach(t, client.ns, to(web2), false) // across nodes
		reach(t, proj.ns, to(client), false)
		reach(t, client.ns, to(proj), true) // myproject has no policy; egress is free
		allow := cl.policy("default", np("allow-all", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: types(in),
			Ingress: []networking.NetworkPolicyIngressRule{{}}}))
		reach(t, client.ns, to(web1), true, "web-1")
		reach(t, proj.ns, to(web2), true, "web-2")
		allow()
		del()
		reach(t, client.ns, to(web1), true, "web-1")
	})

	t.Run("the NetworkPolicy resource example", func(t *testing.T) {
		// The notes' test-network-policy, on port 8080 instead of 6379,
		// with the LAN as the ipBlock and the test process excepted.
		spec := func(except string) networking.NetworkPolicySpec {
			return networking.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
				PolicyTypes: types(in, eg),
				Ingress: []networking.NetworkPolicyIngressRule{{
					From: []networking.NetworkPolicyPeer{
						{IPBlock: &networking.IPBlock{CIDR: tb.subnet + ".0/24", Except: []string{except}}},
						{NamespaceSelector: sel(map[string]string{"project": "myproject"})},
						{PodSelector: sel(map[string]string{"role": "frontend"})},
					},
					Ports: []networking.NetworkPolicyPort{{Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(8080))}},
				}},
				Egress: []networking.NetworkPolicyEgressRule{{
					To:    []networking.NetworkPolicyPeer{{IPBlock: &networking.IPBlock{CIDR: "10.0.0.0/24"}}},
					Ports: []networking.NetworkPolicyPort{{Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(5978))}},
				}},
			}
		}
		// A node port that keeps the client's address (Local policy), so
		// that the ipBlock sees the test process.
		local := cl.service(&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db-local"},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeNodePort, ExternalTrafficPolicy: v1.ServiceExternalTrafficPolicyLocal, Ports: httpPort(80, 8080)}})
		cl.endpoints(local, 8080, v1.ProtocolTCP, "", web1, web2)
		nodePort := fmt.Sprintf("%s:%d", tb.nodes[0].ip, local.Spec.Ports[0].NodePort)
		reach(t, "", nodePort, true, "web-1")

		del := cl.policy("default", np("test-network-policy", spec(tb.subnet+".1/32")))
		reach(t, client.ns, to(web1), true, "web-1") // podSelector role=frontend
		reach(t, client.ns, to(web2), true, "web-2") // across nodes
		reach(t, proj.ns, to(web2), true, "web-2")   // namespaceSelector project=myproject
		reach(t, other.ns, to(web1), false)          // role=other
		reach(t, aliceClient.ns, to(web2), false)    // another namespace
		reach(t, "", nodePort, false)                // the ipBlock's exception
		reach(t, web1.ns, to(client), false)         // db may only reach 10.0.0.0/24:5978
		reach(t, client.ns, to(other), true)         // pods the policy does not select
		del()
		del = cl.policy("default", np("test-network-policy", spec(tb.subnet+".99/32")))
		reach(t, "", nodePort, true, "web-1") // now inside the ipBlock
		del()
	})

	t.Run("namespace and pod selectors combined or separate", func(t *testing.T) {
		combined := cl.policy("default", np("combined", networking.NetworkPolicySpec{PodSelector: *sel(map[string]string{"role": "db"}),
			Ingress: []networking.NetworkPolicyIngressRule{{From: []networking.NetworkPolicyPeer{
				{NamespaceSelector: sel(map[string]string{"user": "alice"}), PodSelector: sel(map[string]string{"role": "client"})},
			}}}}))
		reach(t, aliceClient.ns, to(web2), true, "web-2")
		reach(t, aliceServer.ns, to(web1), false)
		reach(t, client.ns, to(web1), false)
		combined()
		separate := cl.policy("default", np("separate", networking.NetworkPolicySpec{PodSelector: *sel(map[string]string{"role": "db"}),
			Ingress: []networking.NetworkPolicyIngressRule{{From: []networking.NetworkPolicyPeer{
				{NamespaceSelector: sel(map[string]string{"user": "alice"})},
				{PodSelector: sel(map[string]string{"role": "frontend"})},
			}}}}))
		reach(t, aliceServer.ns, to(web1), true, "web-1")
		reach(t, client.ns, to(web2), true, "web-2")
		reach(t, other.ns, to(web1), false)
		separate()
	})

	t.Run("default deny all egress, then allow all egress", func(t *testing.T) {
		del := cl.policy("default", np("default-deny", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: types(eg)}))
		reach(t, client.ns, to(proj), false)
		reach(t, client.ns, to(web1), false)
		reach(t, proj.ns, to(client), true) // ingress is free
		// The node's cluster DNS stays reachable.
		if m, err := lookup(client.ns, "my-nginx.default.svc.cluster.local.", dns.TypeA); err != nil || len(answerIPs(m)) != 1 {
			t.Errorf("DNS under default-deny egress: %v %v", m, err)
		}
		allow := cl.policy("default", np("allow-all", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: types(eg),
			Egress: []networking.NetworkPolicyEgressRule{{}}}))
		reach(t, client.ns, to(proj), true, "proj")
		allow()
		del()
	})

	t.Run("default deny all ingress and all egress", func(t *testing.T) {
		del := cl.policy("default", np("default-deny", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: types(in, eg)}))
		reach(t, client.ns, to(proj), false)
		reach(t, proj.ns, to(web1), false)
		reach(t, web2.ns, to(other), false)
		del()
		reach(t, proj.ns, to(web1), true, "web-1")
	})
}
