package netpol

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networking "k8s.io/api/networking/v1"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/agent/internal/ruleset"
)

// TestJumpStaysFirst checks, with the real iptables in a private network
// namespace, that the enforcer's jump is moved above a rule inserted
// before it (the proxy's accept rules), and that cleanup removes it all.
func TestJumpStaysFirst(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	ipt, err := ruleset.NewIPTables(ruleset.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := Compile(Input{Pods: []*v1.Pod{db, frontend}, Namespaces: allNamespaces, NodeName: node,
		Policies: []*networking.NetworkPolicy{seedPolicy()}}, Config{Family: v1.IPv4Protocol, AllowMark: 0x10000})
	w := ruleset.NewWriter(Owned)
	p := w.Payload(rs, nil)
	if err := ipt.Restore(context.Background(), p.Data); err != nil {
		t.Fatalf("%v\n%s", err, p.Data)
	}
	for _, j := range Jumps() {
		if err := ipt.EnsureFirst(j); err != nil {
			t.Fatal(err)
		}
	}
	netnstest.Run(t, "iptables", "-I", "FORWARD", "1", "-m", "mark", "--mark", "0x4000/0x4000", "-j", "ACCEPT")
	for _, j := range Jumps() {
		if err := ipt.EnsureFirst(j); err != nil {
			t.Fatal(err)
		}
	}
	fwd := strings.Split(strings.TrimSpace(netnstest.Run(t, "iptables", "-S", "FORWARD")), "\n")
	if len(fwd) != 3 || !strings.Contains(fwd[1], chainNetpol) || !strings.Contains(fwd[2], "ACCEPT") {
		t.Errorf("FORWARD:\n%s\nwant the policy jump first and only once", strings.Join(fwd, "\n"))
	}
	if err := Cleanup(context.Background(), []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Fatal(err)
	}
	if save := netnstest.Run(t, "iptables-save"); strings.Contains(save, "KEELSON") {
		t.Errorf("cleanup left:\n%s", save)
	}
}
