package apiserver

import (
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/keelson/keelson/core/pki"
)

func TestTermFence(t *testing.T) {
	plugin := func(groups ...string) user.Info {
		return &user.DefaultInfo{Name: pki.PluginUser("replicaset"), Groups: append([]string{pki.PluginsGroup}, groups...)}
	}
	tests := []struct {
		name    string
		user    user.Info
		current uint64
		refused string // substring of the refusal; empty when allowed
	}{
		{"admin is never fenced", &user.DefaultInfo{Name: "keelson-admin", Groups: []string{pki.MastersGroup, pki.TermGroup(1)}}, 9, ""},
		{"anonymous request", nil, 9, ""},
		{"plugin of the current term", plugin(pki.TermGroup(9)), 9, ""},
		{"plugin of a newer term than this server knows", plugin(pki.TermGroup(10)), 9, ""},
		{"plugin of a deposed leader", plugin(pki.TermGroup(8)), 9, "raft term 8, but the cluster is in term 9"},
		{"plugin identity without a term", plugin(), 9, "carries no raft term"},
		{"malformed term group", plugin(pki.TermGroupPrefix + "x"), 9, "carries no raft term"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTermFence(func() uint64 { return tt.current })
			err := f.check(tt.user, func(err error) error { return err })
			switch {
			case tt.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.refused != "" && err == nil:
				t.Errorf("allowed; want a refusal containing %q", tt.refused)
			case tt.refused != "" && !strings.Contains(err.Error(), tt.refused):
				t.Errorf("refusal %q does not say %q", err, tt.refused)
			}
		})
	}
}

func TestParseTermGroupRoundTrip(t *testing.T) {
	for _, term := range []uint64{0, 1, 1 << 40} {
		got, ok := pki.ParseTermGroup(pki.TermGroup(term))
		if !ok || got != term {
			t.Errorf("ParseTermGroup(TermGroup(%d)) = %d, %v", term, got, ok)
		}
	}
	if _, ok := pki.ParseTermGroup(pki.PluginsGroup); ok {
		t.Error("the plugins group parsed as a term")
	}
}
