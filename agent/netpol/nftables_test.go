package netpol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networking "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/agent/internal/ruleset"
	"github.com/keelson/keelson/internal/testnet"
)

// TestNFTablesConnections checks the nftables mode with real connections
// in a private network namespace (the node) routing between three pod
// namespaces: what a policy allows connects, what it does not is refused,
// the node reaches isolated pods, a peer pod's label change is a set
// element and takes effect, an established connection outlives the policy
// that allowed it, a restart replaces the table, and cleanup removes it.
func TestNFTablesConnections(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (scripts/install-deps.sh installs nftables)")
	}
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	netnstest.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	dbNS := attach(t, "db", "10.244.1.1", "10.244.1.2")
	feNS := attach(t, "fe", "10.244.2.1", "10.244.2.2")
	otherNS := attach(t, "ot", "10.244.3.1", "10.244.3.2")
	for _, port := range []string{"6379", "6380"} {
		echoIn(t, dbNS, "10.244.1.2:"+port)
	}
	echoIn(t, otherNS, "10.244.3.2:8080")
	db := mkpod("default", "db", "10.244.1.2", node, map[string]string{"role": "db"})
	fe := mkpod("default", "frontend", "10.244.2.2", node, map[string]string{"role": "frontend"})
	oth := mkpod("default", "other", "10.244.3.2", node, map[string]string{"role": "other"})
	pol := policy("db", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
		Ingress: []networking.NetworkPolicyIngressRule{{
			From:  []networking.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
			Ports: []networking.NetworkPolicyPort{tcpPort(6379)},
		}},
	})
	link := nftLink{family: v1.IPv4Protocol}
	var installed *NFTTable
	sync := func(full bool, pols []*networking.NetworkPolicy, pods ...*v1.Pod) NFTBatch {
		t.Helper()
		nt, errs := CompileNFT(Input{Policies: pols, Pods: pods, Namespaces: allNamespaces, NodeName: node}, Config{Family: v1.IPv4Protocol})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		prev := installed
		if full {
			prev = nil
		}
		b := NFTDiff(prev, nt)
		if err := link.Apply(b); err != nil {
			t.Fatalf("%v\n%s", err, b.Text())
		}
		installed = nt
		return b
	}
	expect := func(what, ns, addr string, allowed bool) {
		t.Helper()
		err := echo(ns, addr)
		switch {
		case allowed && err != nil:
			t.Errorf("%s (%s): %v, want a connection", what, addr, err)
		case !allowed && !errors.Is(err, syscall.ECONNREFUSED):
			t.Errorf("%s (%s): %v, want the connection refused", what, addr, err)
		}
	}

	sync(true, []*networking.NetworkPolicy{pol}, db, fe, oth)
	expect("frontend to db, allowed port", feNS, "10.244.1.2:6379", true)
	expect("frontend to db, other port", feNS, "10.244.1.2:6380", false)
	expect("other to db", otherNS, "10.244.1.2:6379", false)
	expect("the node to db (probes)", "", "10.244.1.2:6380", true)
	expect("db to other (db is not isolated for egress)", dbNS, "10.244.3.2:8080", true)
	if err := echo(feNS, "10.244.1.2:6379"); err != nil {
		t.Fatal(err)
	}

	// An established connection outlives the policy that allowed it.
	var kept net.Conn
	if err := testnet.InNamespace(feNS, func() (err error) { kept, err = net.DialTimeout("tcp", "10.244.1.2:6379", 3*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	defer kept.Close()

	// other becomes a frontend: one set element, no chain.
	oth2 := mkpod("default", "other", "10.244.3.2", node, map[string]string{"role": "frontend"})
	if b := sync(false, []*networking.NetworkPolicy{pol}, db, fe, oth2); b.Chains != 0 || b.Elements != 1 {
		t.Errorf("a label change wrote %d chains and %d elements, want one element:\n%s", b.Chains, b.Elements, b.Text())
	}
	expect("other, now a frontend, to db", otherNS, "10.244.1.2:6379", true)

	// Deny everything: new connections are refused, the kept one works.
	deny := policy("deny", networking.NetworkPolicySpec{})
	sync(false, []*networking.NetworkPolicy{deny}, db, fe, oth2)
	expect("frontend to db under deny-all", feNS, "10.244.1.2:6379", false)
	if err := roundTrip(kept); err != nil {
		t.Errorf("an established connection broke when its policy went: %v", err)
	}

	// A restarted agent (nothing known) replaces the table whole.
	installed = nil
	sync(false, []*networking.NetworkPolicy{pol}, db, fe, oth)
	expect("after the restart, frontend to db", feNS, "10.244.1.2:6379", true)
	expect("after the restart, other to db", otherNS, "10.244.1.2:6379", false)
	if out := netnstest.Run(t, "nft", "list", "table", "ip", NFTTableName); !strings.Contains(out, "hook forward priority filter") || strings.Count(out, "chain ") != 4 {
		t.Errorf("the table after the restart:\n%s\nwant forward, input, netpol and db's ingress chain", out)
	}

	// Egress: frontend reaches a port range of a block minus an exception.
	egressFE := policy("fe-out", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
		PolicyTypes: []networking.PolicyType{networking.PolicyTypeEgress},
		Egress: []networking.NetworkPolicyEgressRule{{
			To: []networking.NetworkPolicyPeer{{IPBlock: &networking.IPBlock{CIDR: "10.244.0.0/16", Except: []string{"10.244.3.0/24"}}}},
			Ports: []networking.NetworkPolicyPort{{Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(6380)),
				EndPort: ptr.To[int32](8080)}},
		}},
	})
	sync(false, []*networking.NetworkPolicy{egressFE}, db, fe, oth)
	expect("frontend to db, in the range", feNS, "10.244.1.2:6380", true)
	expect("frontend to db, below the range", feNS, "10.244.1.2:6379", false)
	expect("frontend to other, excepted", feNS, "10.244.3.2:8080", false)
	expect("other to db (nobody isolated)", otherNS, "10.244.1.2:6379", true)

	if err := Cleanup(context.Background(), []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Fatal(err)
	}
	if out := netnstest.Run(t, "nft", "list", "tables"); strings.Contains(out, NFTTableName) {
		t.Errorf("cleanup left the table:\n%s", out)
	}
	expect("after cleanup, other to db", otherNS, "10.244.1.2:6379", true)
	if err := Cleanup(context.Background(), []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// attach creates a network namespace joined to this one by a veth pair,
// hostIP here and nsIP there.
func attach(t *testing.T, role, hostIP, nsIP string) string {
	return netnstest.Attach(t, "knp", role, hostIP, nsIP)
}

// echoIn echoes on TCP addr in ns.
func echoIn(t *testing.T, ns, addr string) {
	var l net.Listener
	if err := testnet.InNamespace(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
}

// echo connects from ns (the node when empty) to addr and round-trips a
// line.
func echo(ns, addr string) error {
	var c net.Conn
	if err := testnet.InNamespace(ns, func() (err error) { c, err = net.DialTimeout("tcp", addr, 3*time.Second); return err }); err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c)
}

func roundTrip(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err
}

// TestModeSwitchRemovesLeftovers runs the enforcer in one mode, then in
// the other: after its first sync, each removes what the other left, and
// Cleanup removes both.
func TestModeSwitchRemovesLeftovers(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (scripts/install-deps.sh installs nftables)")
	}
	ctx := context.Background()
	objs := []runtime.Object{seedPolicy(), db, frontend}
	for _, n := range allNamespaces {
		objs = append(objs, n)
	}
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	pols, pods, nss := f.Networking().V1().NetworkPolicies().Informer(), f.Core().V1().Pods().Informer(), f.Core().V1().Namespaces().Informer()
	stop := make(chan struct{})
	defer close(stop)
	f.Start(stop)
	f.WaitForCacheSync(stop)
	run := func(mode string) {
		t.Helper()
		e, err := New(Options{NodeName: node, Mode: mode}, pols, pods, nss, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Sync(ctx); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
	state := func() (ipt, nft bool) {
		return strings.Contains(netnstest.Run(t, "iptables-save"), chainNetpol),
			strings.Contains(netnstest.Run(t, "nft", "list", "tables"), NFTTableName)
	}
	run(ModeIPTables)
	if ipt, nft := state(); !ipt || nft {
		t.Errorf("iptables mode: chains in iptables %v, nftables table %v; want only iptables", ipt, nft)
	}
	run(ModeNFTables)
	if ipt, nft := state(); ipt || !nft {
		t.Errorf("nftables mode after iptables: chains in iptables %v, nftables table %v; want only the table", ipt, nft)
	}
	run(ModeIPTables)
	if ipt, nft := state(); !ipt || nft {
		t.Errorf("iptables mode after nftables: chains in iptables %v, nftables table %v; want only iptables", ipt, nft)
	}
	run(ModeNFTables)
	if err := Cleanup(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if ipt, nft := state(); ipt || nft {
		t.Errorf("after cleanup: chains in iptables %v, nftables table %v", ipt, nft)
	}
}

// TestNFTablesAtScale programs a node with 100 local pods among 2,000 in
// 20 namespaces, each namespace with a default deny and two allow
// policies, then adds a peer pod: the table is written in one
// transaction, and the new pod is set elements only. It logs the times.
func TestNFTablesAtScale(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	var pods []*v1.Pod
	var pols []*networking.NetworkPolicy
	nss := []*v1.Namespace{}
	for n := range 20 {
		name := "ns-" + strconv.Itoa(n)
		nss = append(nss, ns(name, map[string]string{"team": strconv.Itoa(n % 4)}))
		for i := range 100 {
			nodeName := "other"
			if i < 5 {
				nodeName = node
			}
			role := []string{"frontend", "backend", "db", "cache"}[i%4]
			pods = append(pods, mkpod(name, "p"+strconv.Itoa(i), fmt.Sprintf("10.%d.%d.%d", 100+n, i/250, 1+i%250), nodeName,
				map[string]string{"role": role}, v1.ContainerPort{Name: "http", ContainerPort: 8080}))
		}
		np := func(pname string, spec networking.NetworkPolicySpec) {
			p := policy(pname, spec)
			p.Namespace = name
			pols = append(pols, p)
		}
		np("default-deny", networking.NetworkPolicySpec{PolicyTypes: []networking.PolicyType{networking.PolicyTypeIngress, networking.PolicyTypeEgress}})
		np("frontend-to-backend", networking.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "backend"}},
			Ingress: []networking.NetworkPolicyIngressRule{{
				From:  []networking.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
				Ports: []networking.NetworkPolicyPort{{Port: ptr.To(intstr.FromString("http"))}},
			}}})
		np("team-egress", networking.NetworkPolicySpec{
			PolicyTypes: []networking.PolicyType{networking.PolicyTypeEgress},
			Egress: []networking.NetworkPolicyEgressRule{{
				To: []networking.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": strconv.Itoa(n % 4)}}},
					{IPBlock: &networking.IPBlock{CIDR: "192.168.0.0/16", Except: []string{"192.168.1.0/24"}}}},
				Ports: []networking.NetworkPolicyPort{tcpPort(8080), {Protocol: ptr.To(v1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(5000)), EndPort: ptr.To[int32](5100)}},
			}}})
	}
	link := nftLink{family: v1.IPv4Protocol}
	compile := func(pods []*v1.Pod) (*NFTTable, time.Duration) {
		start := time.Now()
		nt, errs := CompileNFT(Input{Policies: pols, Pods: pods, Namespaces: nss, NodeName: node}, Config{Family: v1.IPv4Protocol})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return nt, time.Since(start)
	}
	apply := func(b NFTBatch) time.Duration {
		start := time.Now()
		if err := link.Apply(b); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	first, tc := compile(pods)
	b := NFTDiff(nil, first)
	ta := apply(b)
	t.Logf("full: %d chains, %d sets, %d rules and elements; compile %v, transaction of %d commands %v",
		len(first.Chains), len(first.Sets), first.Rules(), tc, len(b.Ops), ta)
	newcomer := mkpod("ns-3", "new", "10.103.9.9", "other", map[string]string{"role": "frontend"}, v1.ContainerPort{Name: "http", ContainerPort: 8080})
	second, tc := compile(append(pods, newcomer))
	b = NFTDiff(first, second)
	ta = apply(b)
	t.Logf("a pod added: %d chains, %d elements written; compile %v, transaction %v", b.Chains, b.Elements, tc, ta)
	if b.Chains != 0 || b.Elements == 0 {
		t.Errorf("a new peer pod wrote %d chains and %d elements, want elements only:\n%s", b.Chains, b.Elements, b.Text())
	}
	b = NFTDiff(nil, second)
	ta = apply(b)
	t.Logf("full sync over the existing table: %v", ta)
	if out := netnstest.Run(t, "nft", "list", "table", "ip", NFTTableName); !strings.Contains(out, "10.103.9.9") {
		t.Errorf("the new pod is in no set after a full sync")
	}

	// The iptables mode on the same cluster, for comparison (seconds:
	// only when asked).
	if os.Getenv("KEELSON_NETPOL_COMPARE") == "" {
		return
	}
	ipt, err := ruleset.NewIPTables(ruleset.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	for i, ps := range [][]*v1.Pod{pods, append(pods, newcomer)} {
		start := time.Now()
		rs, _ := Compile(Input{Policies: pols, Pods: ps, Namespaces: nss, NodeName: node}, Config{Family: v1.IPv4Protocol, AllowMark: 0x10000})
		tc := time.Since(start)
		p := ruleset.NewWriter(Owned).Payload(rs, nil)
		start = time.Now()
		if err := ipt.Restore(context.Background(), p.Data); err != nil {
			t.Fatal(err)
		}
		t.Logf("iptables, sync %d (all chains written): %d rules; compile %v, iptables-restore %v", i+1, rs.Rules(), tc, time.Since(start))
	}
}

// TestNFTablesIPv6 checks IPv6 with real connections, in both modes: a
// peer set, a port, an ipBlock prefix with an exception, egress, the
// node's own connections, and neighbor discovery (without it an
// egress-isolated pod cannot reach its router at all).
func TestNFTablesIPv6(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	netnstest.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	attach6 := func(role, hostIP, nsIP string) string { return netnstest.Attach(t, "knp6", role, hostIP, nsIP) }
	dbNS := attach6("db", "fd00:244:1::1", "fd00:244:1::2")
	feNS := attach6("fe", "fd00:244:2::1", "fd00:244:2::2")
	otherNS := attach6("ot", "fd00:244:3::1", "fd00:244:3::2")
	other2NS := attach6("o2", "fd00:244:4::1", "fd00:244:4::2")
	for _, port := range []string{"6379", "6380"} {
		echoIn(t, dbNS, "[fd00:244:1::2]:"+port)
	}
	echoIn(t, otherNS, "[fd00:244:3::2]:8080")
	db := mkpod("default", "db", "fd00:244:1::2", node, map[string]string{"role": "db"})
	fe := mkpod("default", "frontend", "fd00:244:2::2", node, map[string]string{"role": "frontend"})
	pols := []*networking.NetworkPolicy{
		policy("db", networking.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
			Ingress: []networking.NetworkPolicyIngressRule{
				{From: []networking.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}}},
					Ports: []networking.NetworkPolicyPort{tcpPort(6379)}},
				{From: []networking.NetworkPolicyPeer{{IPBlock: &networking.IPBlock{CIDR: "fd00:244::/45", Except: []string{"fd00:244:3::/64"}}}},
					Ports: []networking.NetworkPolicyPort{tcpPort(6380)}},
			}}),
		policy("fe", networking.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
			PolicyTypes: []networking.PolicyType{networking.PolicyTypeEgress},
			Egress: []networking.NetworkPolicyEgressRule{{
				To: []networking.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}}}}}},
		}),
	}
	in := Input{Policies: pols, Pods: []*v1.Pod{db, fe}, Namespaces: allNamespaces, NodeName: node}
	for _, mode := range []string{ModeNFTables, ModeIPTables} {
		t.Run(mode, func(t *testing.T) { checkIPv6(t, mode, in, dbNS, feNS, otherNS, other2NS) })
	}
}

// checkIPv6 installs the rules of in in one mode, checks the connections
// and cleans up.
func checkIPv6(t *testing.T, mode string, in Input, dbNS, feNS, otherNS, other2NS string) {
	if mode == ModeNFTables {
		nt, errs := CompileNFT(in, Config{Family: v1.IPv6Protocol})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if err := (nftLink{family: v1.IPv6Protocol}).Apply(NFTDiff(nil, nt)); err != nil {
			t.Fatalf("%v\n%s", err, nt.Text())
		}
	} else {
		rs, errs := Compile(in, Config{Family: v1.IPv6Protocol, AllowMark: 0x10000})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		ipt, err := ruleset.NewIPTables(ruleset.IPv6)
		if err != nil {
			t.Fatal(err)
		}
		p := ruleset.NewWriter(Owned).Payload(rs, nil)
		if err := ipt.Restore(context.Background(), p.Data); err != nil {
			t.Fatalf("%v\n%s", err, p.Data)
		}
		for _, j := range Jumps() {
			if err := ipt.EnsureFirst(j); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		what, ns, addr string
		allowed        bool
	}{
		{"frontend to db", feNS, "[fd00:244:1::2]:6379", true},
		{"frontend to db, the block's port (frontend is in the block)", feNS, "[fd00:244:1::2]:6380", true},
		{"other to db, port of the peer set", otherNS, "[fd00:244:1::2]:6379", false},
		{"other to db, excepted from the block", otherNS, "[fd00:244:1::2]:6380", false},
		{"other2 to db, in the block", other2NS, "[fd00:244:1::2]:6380", true},
		{"frontend to other (egress to db only)", feNS, "[fd00:244:3::2]:8080", false},
		{"db to other (not isolated for egress)", dbNS, "[fd00:244:3::2]:8080", true},
		{"the node to db", "", "[fd00:244:1::2]:6380", true},
	} {
		err := echo(c.ns, c.addr)
		if c.allowed && err != nil || !c.allowed && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s (%s): %v, want allowed %v (refused otherwise)", c.what, c.addr, err, c.allowed)
		}
	}
	if err := Cleanup(context.Background(), []v1.IPFamily{v1.IPv6Protocol}); err != nil {
		t.Fatal(err)
	}
}
