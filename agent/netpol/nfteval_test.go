package netpol

import (
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networking "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nftPacket is a connection's packet as the enforcer's table sees it.
type nftPacket struct {
	src, dst    netip.Addr
	proto       string
	dport       int
	established bool
}

// nftAllows runs p through the table from the forward hook, as the kernel
// would: jumps, returns and the end of a chain return to the caller, a
// reject ends the walk, the base chain's policy accepts.
func nftAllows(t *testing.T, tb *NFTTable, p nftPacket) bool {
	t.Helper()
	return nftWalk(t, tb, nftForward, p, 0) != "reject"
}

func nftWalk(t *testing.T, tb *NFTTable, chain string, p nftPacket, depth int) string {
	t.Helper()
	rules, ok := tb.Chains[chain]
	if !ok {
		t.Fatalf("jump to chain %s, which the table does not hold:\n%s", chain, tb.Text())
	}
	if depth > 16 {
		t.Fatalf("jumps nest too deep at chain %s", chain)
	}
	for _, r := range rules {
		if !nftMatches(t, tb, r, p) {
			continue
		}
		switch r.Verdict.kind {
		case "reject":
			return "reject"
		case "return":
			return "return"
		case "jump":
			if nftWalk(t, tb, r.Verdict.chain, p, depth+1) == "reject" {
				return "reject"
			}
		default:
			t.Fatalf("rule %s: unknown verdict", r.Text(tb.Family))
		}
	}
	return "return"
}

func nftMatches(t *testing.T, tb *NFTTable, r NFTRule, p nftPacket) bool {
	for _, m := range r.Matches {
		a := p.dst
		if m.src {
			a = p.src
		}
		var ok bool
		switch m.kind {
		case matchEstablished:
			ok = p.established
		case matchAddr:
			ok = m.prefix.Contains(a) != m.neg
		case matchSet:
			set, known := tb.Sets[m.set]
			if !known {
				t.Fatalf("rule %s: no set %s", r.Text(tb.Family), m.set)
			}
			for _, e := range set {
				ok = ok || e == a
			}
		case matchProto:
			ok = p.proto == m.proto
		case matchPorts:
			ok = p.dport >= int(m.lo) && p.dport <= int(m.hi)
		default:
			t.Fatalf("rule %s: the evaluator does not know match %d", r.Text(tb.Family), m.kind)
		}
		if !ok {
			return false
		}
	}
	return true
}

func TestNFTOnlyThisNodesPodsGetChains(t *testing.T) {
	nt, _ := CompileNFT(Input{Policies: []*networking.NetworkPolicy{policy("deny", networking.NetworkPolicySpec{})},
		Pods: allPods, Namespaces: allNamespaces, NodeName: node}, Config{Family: v1.IPv4Protocol})
	for _, p := range []*v1.Pod{db, frontend} {
		if _, ok := nt.Chains[nftIngressPrefix+p.Status.PodIP]; !ok {
			t.Errorf("local pod %s has no ingress chain:\n%s", p.Name, nt.Text())
		}
	}
	for _, p := range []*v1.Pod{other, hostNet} {
		if strings.Contains(nt.Text(), p.Status.PodIP) {
			t.Errorf("pod %s (remote or host network) is in the table:\n%s", p.Name, nt.Text())
		}
	}
}

// TestNFTPodChangesAreSetElements checks that a peer pod coming and going
// changes a set's elements and writes no chain, and that a policy change
// rewrites only the chains it touches.
func TestNFTPodChangesAreSetElements(t *testing.T) {
	pol := policy("from-clients", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
		Ingress: []networking.NetworkPolicyIngressRule{{From: []networking.NetworkPolicyPeer{
			{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}},
		}}},
	})
	compile := func(pods []*v1.Pod, pols ...*networking.NetworkPolicy) *NFTTable {
		nt, errs := CompileNFT(Input{Policies: pols, Pods: pods, Namespaces: allNamespaces, NodeName: node}, Config{Family: v1.IPv4Protocol})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return nt
	}
	before := compile(allPods, pol)
	newcomer := mkpod("default", "client-2", "10.244.2.40", "n2", map[string]string{"role": "client"})
	after := compile(append([]*v1.Pod{newcomer}, allPods...), pol)
	if !nftAllows(t, after, nftPacket{src: ip(newcomer), dst: ip(db), proto: "tcp", dport: 80}) ||
		nftAllows(t, before, nftPacket{src: ip(newcomer), dst: ip(db), proto: "tcp", dport: 80}) {
		t.Errorf("the new client is not allowed after it came, or was before:\n%s", after.Text())
	}
	b := NFTDiff(before, after)
	if b.Chains != 0 || b.Elements != 1 || !strings.Contains(b.Text(), "add element ip keelson-netpol peers-") {
		t.Errorf("a pod coming wrote %d chains and %d elements, want one element:\n%s", b.Chains, b.Elements, b.Text())
	}
	if b := NFTDiff(after, before); b.Chains != 0 || b.Elements != 1 || !strings.Contains(b.Text(), "delete element") {
		t.Errorf("a pod going wrote %d chains and %d elements, want one element deleted:\n%s", b.Chains, b.Elements, b.Text())
	}
	if b := NFTDiff(before, before); len(b.Ops) != 1 {
		t.Errorf("no change wrote:\n%s", b.Text())
	}
	// A second policy for db alone: its ingress chain changes (and a set
	// comes); frontend's does not.
	other := policy("from-proj", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
		Ingress: []networking.NetworkPolicyIngressRule{{From: []networking.NetworkPolicyPeer{
			{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"project": "myproject"}}},
		}}},
	})
	b = NFTDiff(before, compile(allPods, pol, other))
	if b.Chains != 1 || !strings.Contains(b.Text(), "flush chain ip keelson-netpol ingress-10.244.1.10") {
		t.Errorf("a policy for db wrote %d chains, want db's ingress chain:\n%s", b.Chains, b.Text())
	}
	// Deleting every policy deletes the pod chains and the sets.
	b = NFTDiff(before, compile(allPods))
	for _, want := range []string{"delete chain ip keelson-netpol ingress-10.244.1.10", "delete set ip keelson-netpol peers-"} {
		if !strings.Contains(b.Text(), want) {
			t.Errorf("no policy left: the transaction lacks %q:\n%s", want, b.Text())
		}
	}
	// A full sync replaces the table in one transaction.
	if full := NFTDiff(nil, before).Text(); !strings.HasPrefix(full, "add table ip keelson-netpol\ndelete table ip keelson-netpol\nadd table") {
		t.Errorf("a full sync does not replace the table:\n%s", full)
	}
}
