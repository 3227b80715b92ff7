package ruleset

import (
	"strings"
	"testing"
)

func own(c string) bool { return strings.HasPrefix(c, "KT-") }

func build(svcs ...string) *Ruleset {
	rs := New()
	top := rs.Chain("nat", "KT-SERVICES")
	for _, s := range svcs {
		top.Add("-d", s, "-j", "KT-SVC-"+s)
		rs.Chain("nat", "KT-SVC-"+s).Add(append(Comment("svc "+s), "-j", "DNAT", "--to-destination", s+":80")...)
	}
	rs.Chain("filter", "KT-FORWARD").Add("-j", "ACCEPT")
	return rs
}

func TestFirstPayloadIsCompleteAndDeletesLeftovers(t *testing.T) {
	w := NewWriter(own)
	p := w.Payload(build("a"), map[string][]string{"nat": {"KT-SERVICES", "KT-OLD"}, "filter": {"KT-FORWARD"}})
	want := `*nat
:KT-OLD - [0:0]
:KT-SERVICES - [0:0]
:KT-SVC-a - [0:0]
-A KT-SERVICES -d a -j KT-SVC-a
-A KT-SVC-a -m comment --comment "svc a" -j DNAT --to-destination a:80
-X KT-OLD
COMMIT
*filter
:KT-FORWARD - [0:0]
-A KT-FORWARD -j ACCEPT
COMMIT
`
	if string(p.Data) != want {
		t.Fatalf("payload:\n%s\nwant:\n%s", p.Data, want)
	}
	if p.Chains != 4 {
		t.Errorf("chains = %d, want 4", p.Chains)
	}
}

func TestLaterPayloadsWriteOnlyChanges(t *testing.T) {
	w := NewWriter(own)
	w.Done(w.Payload(build("a", "b"), nil))
	if !w.Known() {
		t.Fatal("state unknown after Done")
	}
	if p := w.Payload(build("a", "b"), nil); len(p.Data) != 0 {
		t.Errorf("unchanged ruleset wrote:\n%s", p.Data)
	}
	p := w.Payload(build("a", "c"), nil)
	want := `*nat
:KT-SERVICES - [0:0]
:KT-SVC-b - [0:0]
:KT-SVC-c - [0:0]
-A KT-SERVICES -d a -j KT-SVC-a
-A KT-SERVICES -d c -j KT-SVC-c
-A KT-SVC-c -m comment --comment "svc c" -j DNAT --to-destination c:80
-X KT-SVC-b
COMMIT
`
	if string(p.Data) != want {
		t.Fatalf("payload:\n%s\nwant:\n%s", p.Data, want)
	}
	// Not applied (Done not called): the next payload starts from the
	// same old state.
	if p2 := w.Payload(build("a", "c"), nil); string(p2.Data) != want {
		t.Errorf("payload after a failed apply differs:\n%s", p2.Data)
	}
	w.Forget()
	if p := w.Payload(build("a", "c"), nil); !strings.Contains(string(p.Data), ":KT-SVC-a - [0:0]") || !strings.Contains(string(p.Data), "*filter") {
		t.Errorf("payload after Forget is not complete:\n%s", p.Data)
	}
}

// iptables-nft keeps chains sorted by name; a payload in any other order
// makes large restores quadratic.
func TestChainsGoOutSortedByName(t *testing.T) {
	rs := New()
	for _, name := range []string{"KT-Z", "KT-A", "KT-M"} {
		rs.Chain("nat", name).Add("-j", "RETURN")
	}
	got := string(NewWriter(own).Payload(rs, map[string][]string{"nat": {"KT-B"}}).Data)
	want := "*nat\n:KT-A - [0:0]\n:KT-B - [0:0]\n:KT-M - [0:0]\n:KT-Z - [0:0]\n" +
		"-A KT-A -j RETURN\n-A KT-M -j RETURN\n-A KT-Z -j RETURN\n-X KT-B\nCOMMIT\n"
	if got != want {
		t.Errorf("payload:\n%s\nwant:\n%s", got, want)
	}
}

func TestCommentCannotBreakSyntax(t *testing.T) {
	got := strings.Join(Comment("a \"quoted\"\nname\\"), " ")
	if got != `-m comment --comment "a quotedname"` {
		t.Errorf("comment = %s", got)
	}
}
