package loadbalancer

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
)

// v6Backends are the nodes running the IPv6 test's backends (a3 stays
// excluded from load balancers).
var v6Backends = []string{"a1", "a2"}

// TestAnnouncerIPv6 runs the IPv6 (NDP) path on a dual-stack cluster:
// every node and the client get an address of a random ULA /64 on the
// bridge, the local cloud provider's pool holds a /120 of it (and a few
// IPv4 addresses of the bridge), and a RequireDualStack LoadBalancer
// Service with externalTrafficPolicy: Local and a backend on a1 and a2
// gets one address of each family. The client's neighbour solicitation is
// answered by exactly one node, and http://[ADDR]/ reaches the pod there
// (pods are dual-stack, the agents' proxies program their ip6 tables);
// when that node dies (agent kill -9, cable pulled), the other sends an
// unsolicited neighbour advertisement that moves the client's neighbour
// entry to it without the client asking, and its pod answers.
func TestAnnouncerIPv6(t *testing.T) {
	ula := randomULA(t)
	v6pool := netip.PrefixFrom(addrAt(ula, 0x100), 120)
	c := startClusterWith(t, clusterOptions{
		extraClusterCIDR: ",fd42::/56",
		serverArgs:       []string{"--service-cidr", "10.43.0.0/16,fd43::/108"},
		netArgs: func(n *ha.Network) []string {
			return []string{"--load-balancer-pool", fmt.Sprintf("lan=%s-%s,%s", lbIPOf(n, 200), lbIPOf(n, 209), v6pool)}
		},
		beforeAgents: func(c *lbCluster) { c.addIPv6(t, ula) },
	})
	macs := map[string]string{}
	for _, n := range agentNames {
		macs[n] = macOf(t, c.Net.Host(n))
	}
	v4, v6 := c.deployDualStack(t, "web6")
	if !v6pool.Contains(v6) {
		t.Fatalf("the Service's IPv6 address %s is not of the pool %s", v6, v6pool)
	}
	t.Logf("Service web6: %s and %s", v4, v6)
	owner := c.testNDPAnswer(t, v6, macs)
	c.testServedOverIPv6(t, v6, owner)
	if _, err := c.get(v4.String(), deadline/10); err != nil {
		t.Errorf("the dual-stack Service's IPv4 address: %v", err)
	}
	next := c.testUnsolicitedNA(t, v6, owner, macs)
	c.testServedOverIPv6(t, v6, next)
	c.bringBack(t, owner)
}

// testServedOverIPv6: http://[ip]/ reaches the backend pod on node (the
// announcing one: externalTrafficPolicy Local), which sees the client's
// own IPv6 address.
func (c *lbCluster) testServedOverIPv6(t *testing.T, ip netip.Addr, node string) {
	var body string
	harness.Eventually(t, deadline, "the client reaches http://["+ip.String()+"]", func() (bool, string) {
		var err error
		body, err = c.get("["+ip.String()+"]", 2*time.Second)
		return err == nil, fmt.Sprint(err)
	})
	f := strings.Fields(body)
	if len(f) != 2 || !strings.HasPrefix(f[0], "web6-"+node+"-") {
		t.Errorf("http://[%s] answered %q; want the pod on %s", ip, body, node)
	}
	if want := c.clientIPv6(t); len(f) == 2 && strings.Trim(f[1], "[]") != want {
		t.Errorf("the backend saw the request from %q; want the client's own address %s", f[1], want)
	}
	t.Logf("http://[%s] answered %q", ip, body)
}

// clientIPv6 is the client's global IPv6 address on the bridge.
func (c *lbCluster) clientIPv6(t *testing.T) string {
	out, err := c.client.Exec("ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) < 4 {
		t.Fatalf("the client has no global IPv6 address: %q", out)
	}
	addr, _, _ := strings.Cut(f[3], "/")
	return addr
}

// randomULA is a random fdXX:XXXX:XXXX:1::/64 (RFC 4193: a random global ID
// makes a clash with another network on this machine unlikely).
func randomULA(t *testing.T) netip.Prefix {
	var b [16]byte
	if _, err := rand.Read(b[1:6]); err != nil {
		t.Fatal(err)
	}
	b[0], b[7] = 0xfd, 1
	return netip.PrefixFrom(netip.AddrFrom16(b), 64).Masked()
}

// addrAt is the n-th address of p.
func addrAt(p netip.Prefix, n int) netip.Addr {
	a := p.Masked().Addr().As16()
	a[14], a[15] = byte(n>>8), byte(n)
	return netip.AddrFrom16(a)
}

// addIPv6 gives every host on the bridge (nodes and client) an address of
// ula: the node's segment for the announcer, the client's to ask from.
// nodad: the addresses are fresh and unique, and usable at once.
func (c *lbCluster) addIPv6(t *testing.T, ula netip.Prefix) {
	for i, h := range c.Net.Hosts() {
		addr := netip.PrefixFrom(addrAt(ula, 0x11+i), 64)
		if _, err := h.Exec("ip", "-6", "addr", "add", addr.String(), "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
	}
}

// deployDualStack runs a busybox httpd backend on a1 and a2 (one
// Deployment each, one Service over both) behind a RequireDualStack,
// externalTrafficPolicy: Local LoadBalancer Service, and returns the
// addresses the cloud provider gave it.
func (c *lbCluster) deployDualStack(t *testing.T, name string) (v4, v6 netip.Addr) {
	ctx := context.Background()
	var docs []string
	for _, node := range v6Backends {
		d := backend(name, node, 1, v1.ServiceExternalTrafficPolicyLocal, "")
		d = d[:strings.Index(d, "---")]
		d = strings.Replace(d, "name: "+name+"\n", "name: "+name+"-"+node+"\n", 1)
		docs = append(docs, d)
	}
	docs = append(docs, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector: {app: %[1]s}
  ports:
  - port: 80
`, name))
	c.kubectl(t).MustIn(t, strings.Join(docs, "---\n"), "apply", "-n", "default", "-f", "-")
	harness.Eventually(t, deadline, "a ready "+name+" pod on a1 and on a2", func() (bool, string) {
		pods, err := c.kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err.Error()
		}
		ready := map[string]bool{}
		var states []string
		for _, p := range pods.Items {
			states = append(states, fmt.Sprintf("%s@%s:%s %v", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIPs))
			for _, cond := range p.Status.Conditions {
				if cond.Type == v1.PodReady && cond.Status == v1.ConditionTrue && p.DeletionTimestamp == nil {
					ready[p.Spec.NodeName] = true
				}
			}
		}
		return ready["a1"] && ready["a2"], strings.Join(states, " ")
	})
	harness.Eventually(t, deadline, "Service "+name+" has an IPv4 and an IPv6 address", func() (bool, string) {
		s, err := c.kube.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		v4, v6 = netip.Addr{}, netip.Addr{}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				v4 = a
			} else if err == nil {
				v6 = a
			}
		}
		return v4.IsValid() && v6.IsValid(), fmt.Sprintf("families %v, status %+v", s.Spec.IPFamilies, s.Status.LoadBalancer)
	})
	return v4, v6
}

// testNDPAnswer: the client's neighbour solicitation for ip is answered
// by exactly one node, one with a backend; its neighbour entry names that
// node. It returns the node.
func (c *lbCluster) testNDPAnswer(t *testing.T, ip netip.Addr, macs map[string]string) string {
	sniff := sniffNA(t, c.client.NS, ip)
	var owner string
	harness.Eventually(t, deadline, "the client resolves "+ip.String()+" by NDP", func() (bool, string) {
		c.solicit(ip)
		owner = c.announcer(t, ip.String(), macs)
		out, _ := c.client.Exec("ip", "-6", "neigh", "show", ip.String())
		return owner != "", out
	})
	if !slices.Contains(v6Backends, owner) {
		t.Fatalf("%s is announced by %s; want a node with a local endpoint (%v)", ip, owner, v6Backends)
	}
	// Ask again with a fresh entry: every node's answer, if any, arrives.
	// Only answers from now on count: until every backend's endpoint was
	// ready, another node with a ready one may have owned the address, and
	// answered, rightly.
	flushed := time.Now()
	if _, err := c.client.Exec("ip", "-6", "neigh", "flush", "to", ip.String()); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, deadline, "the client resolves "+ip.String()+" again", func() (bool, string) {
		c.solicit(ip)
		return c.announcer(t, ip.String(), macs) == owner, fmt.Sprint(sniff.advertisements())
	})
	seen := sniff.since(flushed)
	for _, na := range seen {
		if na.mac != macs[owner] {
			t.Errorf("node MAC %s also answered for %s (owner %s at %s): %v", na.mac, ip, owner, macs[owner], seen)
		}
		if !na.solicited || !na.override {
			t.Errorf("answer %v: want solicited and override flags", na)
		}
	}
	if len(seen) == 0 {
		t.Fatalf("the client's entry names %s but no neighbour advertisement was seen", owner)
	}
	t.Logf("%s answered by %s (%s): %v", ip, owner, macs[owner], seen)
	return owner
}

// solicit makes the client resolve ip: a short HTTP request (its outcome
// aside), whose first packet waits for the neighbour solicitation's answer.
func (c *lbCluster) solicit(ip netip.Addr) {
	_, _ = c.get("["+ip.String()+"]", time.Second)
}

// testUnsolicitedNA: the owner dies (agent killed, cable pulled); without
// the client sending anything, the other backend node's unsolicited
// neighbour advertisement (to all nodes, override set) moves the client's
// entry to it. It returns the new owner; the old one stays down.
func (c *lbCluster) testUnsolicitedNA(t *testing.T, ip netip.Addr, owner string, macs map[string]string) string {
	next := v6Backends[0]
	if next == owner {
		next = v6Backends[1]
	}
	sniff := sniffNA(t, c.client.NS, ip)
	h := c.Net.Host(owner)
	c.agents[owner].Kill()
	if err := h.Unplug(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, deadline, "the client's entry for "+ip.String()+" moves to "+next, func() (bool, string) {
		out, _ := c.client.Exec("ip", "-6", "neigh", "show", ip.String())
		return c.announcer(t, ip.String(), macs) == next, out
	})
	var unsolicited bool
	for _, na := range sniff.advertisements() {
		unsolicited = unsolicited || (na.mac == macs[next] && !na.solicited && na.override && na.toAllNodes)
	}
	if !unsolicited {
		t.Errorf("the entry moved to %s without an unsolicited advertisement from it: %v", next, sniff.advertisements())
	}
	t.Logf("failover %s -> %s: %v", owner, next, sniff.advertisements())
	return next
}

// bringBack plugs the node's cable back in and starts its agent again.
func (c *lbCluster) bringBack(t *testing.T, node string) {
	if err := c.Net.Host(node).Plug(); err != nil {
		t.Fatal(err)
	}
	c.agents[node].Start(t)
}
