package proxy

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// texts are rules' texts.
func texts(rs []NFTRule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Text
	}
	return out
}

// elemsOf renders map m's elements as key text -> verdict text.
func elemsOf(tb *NFTTable, m string) map[string]string {
	out := map[string]string{}
	for k, v := range tb.Maps[m] {
		out[k.String()] = v.String()
	}
	return out
}

func nftTable(t *testing.T, services []*v1.Service, slices ...*discovery.EndpointSlice) *NFTTable {
	t.Helper()
	ports, problems := Snapshot(services, slices, "n1", v1.IPv4Protocol)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	tb, err := NFTRules(ports, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// mustPlan plans the sync of v over installed.
func mustPlan(tb testing.TB, installed *nftInstalled, claims nftClaims, v *portView) nftChanges {
	tb.Helper()
	p, err := planNFTChanges(installed, claims, v, testConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// chainOf finds the one chain whose name starts with prefix and mentions
// readable.
func chainOf(t *testing.T, tb *NFTTable, prefix, readable string) string {
	t.Helper()
	var found []string
	for name := range tb.Chains {
		if strings.HasPrefix(name, prefix) && strings.Contains(name, readable) {
			found = append(found, name)
		}
	}
	if len(found) != 1 {
		t.Fatalf("chains %s*%s*: %v, want exactly one", prefix, readable, found)
	}
	return found[0]
}

func threeServices() ([]*v1.Service, []*discovery.EndpointSlice) {
	return []*v1.Service{
			svc("default", "web", "10.96.0.20", nodePort(30080)),
			svc("default", "api", "10.96.0.21"),
			svc("other", "db", "10.96.0.22"),
		}, []*discovery.EndpointSlice{
			twoEndpoints(),
			slice("default", "api", "api-1", 9000, readyEP("10.244.1.5", "n1")),
			slice("other", "db", "db-1", 5432, readyEP("10.244.2.6", "n2"), readyEP("10.244.2.7", "n2")),
		}
}

func TestNFTServiceLookupsAreMapElements(t *testing.T) {
	services, eps := threeServices()
	tb := nftTable(t, services, eps...)
	web := chainOf(t, tb, nftSvcPrefix, "default/web/tcp/-")
	ext := chainOf(t, tb, nftExtPrefix, "default/web/tcp/-")
	if got := elemsOf(tb, nftServiceIPs)["10.96.0.20 . tcp . 80"]; got != "goto "+web {
		t.Errorf("service-ips[10.96.0.20 . tcp . 80] = %q, want goto %s", got, web)
	}
	if got := elemsOf(tb, nftServiceNodePorts)["tcp . 30080"]; got != "goto "+ext {
		t.Errorf("service-nodeports[tcp . 30080] = %q, want goto %s", got, ext)
	}
	if n := len(elemsOf(tb, nftServiceIPs)); n != 3 {
		t.Errorf("service-ips has %d elements, want one per service: %v", n, elemsOf(tb, nftServiceIPs))
	}
	// The services chain is a lookup, not a rule per service.
	if n := len(texts(tb.Chains[nftServices])); n != 2 {
		t.Errorf("services chain has %d rules: %v", n, texts(tb.Chains[nftServices]))
	}
	// Pods keep their address, others are masqueraded; one random pick
	// over both endpoints, elements of the endpoints map.
	rules := texts(tb.Chains[web])
	if len(rules) != 2 || !strings.Contains(rules[0], "ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000") ||
		!regexp.MustCompile(`^meta l4proto tcp dnat ip addr \. port to numgen random mod 2 offset (\d+) map @endpoints-0$`).MatchString(rules[1]) {
		t.Errorf("service chain %s:\n%s", web, strings.Join(rules, "\n"))
	}
	if eps := endpointsOf(t, tb, web); !slices.Equal(eps, []string{"10.244.1.2:8080", "10.244.2.2:8080"}) {
		t.Errorf("the service's block of the endpoints map holds %v", eps)
	}
	for name := range tb.Chains {
		if strings.HasPrefix(name, nftEpPrefix) {
			t.Errorf("endpoint chain %s without ClientIP affinity", name)
		}
	}
	// Hairpin: each endpoint is in the set the masquerading chain looks
	// DNATed traffic up in.
	for _, a := range []string{"10.244.1.2", "10.244.2.2", "10.244.1.5"} {
		if _, ok := tb.Hairpin[netip.MustParseAddr(a)]; !ok {
			t.Errorf("hairpin set lacks %s: %v", a, tb.Hairpin)
		}
	}
	if got := texts(tb.Chains[nftMasquerading])[0]; got != "ct status dnat ip saddr . ip daddr @hairpin meta mark set meta mark | 0x4000" {
		t.Errorf("masquerading chain starts with %q, want the hairpin lookup", got)
	}
	// Node-port traffic is masqueraded (cluster policy) and takes the
	// service chain.
	if !slices.Equal(texts(tb.Chains[ext]), []string{"meta mark set meta mark | 0x4000", "goto " + web}) {
		t.Errorf("external chain: %q", texts(tb.Chains[ext]))
	}
}

func TestNFTEndpointChangeRewritesOnlyThatService(t *testing.T) {
	services, eps := threeServices()
	before := nftTable(t, services, eps...)
	eps[0] = slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1"), readyEP("10.244.2.9", "n2"))
	after := nftTable(t, services, eps...)

	b := NFTDiff(before, after, NFTObjects{})
	batch := b.Text()
	var touched []string
	for _, l := range strings.Split(strings.TrimSpace(batch), "\n")[1:] { // after "add table"
		f := strings.Fields(l)
		touched = append(touched, f[0]+" "+f[1]+" "+f[4])
	}
	want := []string{
		"delete element endpoints-0", "add element endpoints-0", // one index, new value
		"delete element hairpin", "add element hairpin",
	}
	slices.Sort(touched)
	slices.Sort(want)
	if !slices.Equal(touched, want) {
		t.Errorf("batch for one endpoint replaced:\n%s\nwant the commands\n%s", batch, strings.Join(want, "\n"))
	}
	if b.Elements != 4 || b.Chains != 0 || !strings.Contains(batch, "add element ip keelson endpoints-0 { 3 : 10.244.2.9 . 8080 }") {
		t.Errorf("batch changes %d elements and %d chains, want 4 and none:\n%s", b.Elements, b.Chains, batch)
	}
	// Nothing changed: nothing but the table's presence is asserted.
	if b := NFTDiff(after, after, NFTObjects{}); strings.Count(b.Text(), "\n") != 1 {
		t.Errorf("an unchanged table writes:\n%s", b.Text())
	}
}

func TestNFTServiceAddedAndRemovedChangeItsElementsOnly(t *testing.T) {
	services, eps := threeServices()
	before := nftTable(t, services[:2], eps[:2]...)
	after := nftTable(t, services, eps...)
	add := NFTDiff(before, after, NFTObjects{}).Text()
	if !strings.Contains(add, "add element ip keelson service-ips { 10.96.0.22 . tcp . 80 : goto svc-") ||
		strings.Contains(add, "10.96.0.20") || strings.Contains(add, "delete") || strings.Contains(add, "flush") {
		t.Errorf("adding other/db:\n%s", add)
	}
	del := NFTDiff(after, before, NFTObjects{}).Text()
	if !strings.Contains(del, "delete element ip keelson service-ips { 10.96.0.22 . tcp . 80 }") ||
		strings.Count(del, "delete chain") != 1 || strings.Contains(del, "add ") != strings.HasPrefix(del, "add table") ||
		!strings.Contains(del, "delete element ip keelson endpoints-0 { 4, 5 }") {
		t.Errorf("removing other/db (its service chain, its block of the endpoints map):\n%s", del)
	}
	// The element goes before the chain it jumps to.
	if strings.Index(del, "delete element") > strings.Index(del, "delete chain") {
		t.Errorf("a chain is deleted before the element referring to it:\n%s", del)
	}
}

func TestNFTNoEndpointsAndLocalPolicy(t *testing.T) {
	notReady := slice("default", "empty", "e-1", 8080, ep{ip: "10.244.1.9", node: "n1", ready: new(bool), serving: new(bool)})
	tb := nftTable(t, []*v1.Service{
		svc("default", "empty", "10.96.0.30", nodePort(30090)),
		svc("default", "local", "10.96.0.31", nodePort(30091), externalLocal),
	}, notReady, slice("default", "local", "l-1", 8080, readyEP("10.244.2.2", "n2")))
	for key, want := range map[string]string{
		"10.96.0.30 . tcp . 80": "goto reject-chain", // no endpoints: clients fail fast
	} {
		if got := elemsOf(tb, nftNoEndpoints)[key]; got != want {
			t.Errorf("no-endpoint-services[%s] = %q, want %q", key, got, want)
		}
	}
	if got := elemsOf(tb, nftNoEndpointPorts)["tcp . 30090"]; got != "goto reject-chain" {
		t.Errorf("no-endpoint-nodeports[tcp . 30090] = %q, want reject", got)
	}
	// Local policy and the only endpoint elsewhere: outside clients are
	// dropped, the cluster IP still serves.
	if got := elemsOf(tb, nftNoEndpointPorts)["tcp . 30091"]; got != "drop" {
		t.Errorf("no-endpoint-nodeports[tcp . 30091] = %q, want drop", got)
	}
	if _, ok := elemsOf(tb, nftNoEndpoints)["10.96.0.31 . tcp . 80"]; ok {
		t.Errorf("the local-policy service's cluster IP is refused")
	}
	if _, ok := elemsOf(tb, nftServiceIPs)["10.96.0.30 . tcp . 80"]; ok {
		t.Errorf("a service without endpoints is DNATed")
	}
	ext := chainOf(t, tb, nftExtPrefix, "default/local/")
	svcChain := chainOf(t, tb, nftSvcPrefix, "default/local/")
	want := []string{"ip saddr 10.244.0.0/16 goto " + svcChain, "fib saddr type local meta mark set meta mark | 0x4000", "fib saddr type local goto " + svcChain}
	if !slices.Equal(texts(tb.Chains[ext]), want) {
		t.Errorf("local-policy external chain: %q, want %q (pods and the node use the cluster policy, no local endpoint for others)", texts(tb.Chains[ext]), want)
	}
}

func TestNFTSessionAffinity(t *testing.T) {
	s := svc("default", "web", "10.96.0.20", func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP })
	tb := nftTable(t, []*v1.Service{s}, twoEndpoints())
	if len(tb.Sets) != 2 {
		t.Fatalf("affinity sets: %v, want one per endpoint", tb.Sets)
	}
	for name, timeout := range tb.Sets {
		if timeout != 10800 {
			t.Errorf("set %s: timeout %ds, want the default 10800s", name, timeout)
		}
	}
	rules := texts(tb.Chains[chainOf(t, tb, nftSvcPrefix, "default/web/")])
	if len(rules) != 5 || !strings.HasPrefix(rules[1], "ip saddr @aff-") || !strings.HasPrefix(rules[3], "numgen random mod 2 == 0 goto ") {
		t.Errorf("service chain: recent clients first, then the random pick:\n%s", strings.Join(rules, "\n"))
	}
	ep := texts(tb.Chains[chainOf(t, tb, nftEpPrefix, "__10.244.1.2/8080")])
	if len(ep) != 3 || !strings.HasPrefix(ep[1], "update @aff-") || !strings.Contains(ep[2], "dnat") {
		t.Errorf("endpoint chain records the client before DNAT: %q", ep)
	}
}

func TestNFTFullSyncReplacesWhatItFinds(t *testing.T) {
	services, eps := threeServices()
	tb := nftTable(t, services, eps...)
	web := chainOf(t, tb, nftSvcPrefix, "default/web/")
	listed := NFTObjects{Chains: []string{"svc-OLD-gone/svc/tcp/-", web, "nat-prerouting"}, Sets: []string{nftServiceIPs, "aff-OLD"}}
	batch := NFTDiff(nil, tb, listed).Text()
	for _, want := range []string{
		"flush map ip keelson service-ips\n",
		"flush chain ip keelson " + web + "\n",
		"flush chain ip keelson nat-prerouting\n",
		"delete chain ip keelson svc-OLD-gone/svc/tcp/-\n",
		"delete set ip keelson aff-OLD\n",
		"add element ip keelson service-ips { ",
	} {
		if !strings.Contains(batch, want) {
			t.Errorf("full sync lacks %q:\n%s", want, batch)
		}
	}
	if strings.Contains(batch, "add chain ip keelson "+web) {
		t.Errorf("a listed chain is created again")
	}
}

func TestNFTChangedVerdictIsDeletedThenAdded(t *testing.T) {
	services, eps := threeServices()
	before := nftTable(t, services, eps...)
	eps[1] = slice("default", "api", "api-1", 9000) // no endpoints left
	after := nftTable(t, services, eps...)
	batch := NFTDiff(before, after, NFTObjects{}).Text()
	del := strings.Index(batch, "delete element ip keelson service-ips { 10.96.0.21 . tcp . 80 }")
	add := strings.Index(batch, "add element ip keelson no-endpoint-services { 10.96.0.21 . tcp . 80 : goto reject-chain }")
	if del < 0 || add < 0 {
		t.Errorf("the last endpoint gone: the service lookup must go and a reject come:\n%s", batch)
	}
}

// Two services claiming the same external IP and port write one map
// element: removing one by difference would delete the element the other
// still needs, so such a change is planned as a full sync.
func TestNFTSharedElementForcesAFullSync(t *testing.T) {
	ext := func(s *v1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.10"} }
	services := []*v1.Service{svc("default", "a", "10.96.0.30", ext), svc("default", "b", "10.96.0.31", ext)}
	eps := []*discovery.EndpointSlice{slice("default", "a", "a-1", 8080, readyEP("10.42.0.5", "n1")),
		slice("default", "b", "b-1", 8080, readyEP("10.42.0.6", "n1"))}
	both, _ := Snapshot(services, eps, "n1", v1.IPv4Protocol)
	claims, installed := installNFT(t, both)
	onlyA, _ := Snapshot(services[:1], eps[:1], "n1", v1.IPv4Protocol)
	if p := mustPlan(t, installed, claims, viewOf(onlyA)); !p.shared {
		t.Errorf("removing b, whose external IP element a also claims, was planned by difference:\n%s", p.batch.Text())
	}
	// A change touching only elements of one claimer stays incremental.
	other := []*v1.Service{services[0], svc("default", "c", "10.96.0.32")}
	otherEPs := []*discovery.EndpointSlice{eps[0], slice("default", "c", "c-1", 8080, readyEP("10.42.0.7", "n1"))}
	ac, _ := Snapshot(other, otherEPs, "n1", v1.IPv4Protocol)
	claims, installed = installNFT(t, ac)
	if p := mustPlan(t, installed, claims, viewOf(onlyA)); p.shared {
		t.Errorf("removing c, which shares nothing, forced a full sync")
	}
	// An endpoint change rewrites a port's own elements: not shared.
	movedEPs := []*discovery.EndpointSlice{slice("default", "a", "a-1", 8080, readyEP("10.42.0.9", "n1")), otherEPs[1]}
	moved, _ := Snapshot(other, movedEPs, "n1", v1.IPv4Protocol)
	if p := mustPlan(t, installed, claims, viewOf(moved)); p.shared {
		t.Errorf("an endpoint change of a, which shares nothing, forced a full sync")
	}
}

// endpointsOf reads the endpoints a service chain's DNAT picks from: the
// elements of its block of the endpoints map, sorted.
func endpointsOf(t *testing.T, tb *NFTTable, chain string) []string {
	t.Helper()
	for _, r := range texts(tb.Chains[chain]) {
		m := dnatMapRE.FindStringSubmatch(r)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		start, _ := strconv.Atoi(m[2])
		var out []string
		for i := range n {
			a, ok := tb.Endpoints[uint32(start+i)]
			if !ok || a.Map != m[3] {
				t.Fatalf("chain %s: index %d of its block is not in its endpoints map %s: %+v", chain, start+i, m[3], a)
			}
			out = append(out, a.Addr.String())
		}
		slices.Sort(out)
		return out
	}
	t.Fatalf("chain %s has no DNAT through the endpoints map: %q", chain, texts(tb.Chains[chain]))
	return nil
}

// installNFT is the bookkeeping of a table holding ports.
func installNFT(t *testing.T, ports []ServicePort) (nftClaims, *nftInstalled) {
	claims, installed := nftClaims{}, newNFTInstalled()
	mustPlan(t, installed, claims, viewOf(ports)).commit(installed, claims)
	return claims, installed
}

// A port with a local policy has two picks, each its own block of the
// endpoints maps: the cluster chain over all endpoints, the local chain
// over this node's.
func TestNFTLocalPolicyHasItsOwnBlock(t *testing.T) {
	tb := nftTable(t, []*v1.Service{svc("default", "local", "10.96.0.31", nodePort(30091), externalLocal)},
		slice("default", "local", "l-1", 8080, readyEP("10.244.1.7", "n1"), readyEP("10.244.2.2", "n2")))
	if got := endpointsOf(t, tb, chainOf(t, tb, nftSvcPrefix, "default/local/")); !slices.Equal(got, []string{"10.244.1.7:8080", "10.244.2.2:8080"}) {
		t.Errorf("cluster pick: %v, want both endpoints", got)
	}
	if got := endpointsOf(t, tb, chainOf(t, tb, nftSvlPrefix, "default/local/")); !slices.Equal(got, []string{"10.244.1.7:8080"}) {
		t.Errorf("local pick: %v, want this node's endpoint only", got)
	}
	if len(tb.Endpoints) != 3 {
		t.Errorf("endpoints maps hold %v, want 3 elements (two blocks)", tb.Endpoints)
	}
}
