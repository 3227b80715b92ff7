package apiserver

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/keelson/keelson/core/kvserver"
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

// A plugin's writes carry its term to the store in the etcd requests'
// metadata; reads, and other users' writes, carry nothing.
func TestWithFenceTermPassesThePluginTerm(t *testing.T) {
	plugin := &user.DefaultInfo{Name: pki.PluginUser("replicaset"), Groups: []string{pki.PluginsGroup, pki.TermGroup(12)}}
	admin := &user.DefaultInfo{Name: "keelson-admin", Groups: []string{pki.MastersGroup, pki.TermGroup(12)}}
	tests := []struct {
		name   string
		method string
		user   user.Info
		want   []string
	}{
		{"plugin write", http.MethodPost, plugin, []string{"12"}},
		{"plugin delete", http.MethodDelete, plugin, []string{"12"}},
		{"plugin read", http.MethodGet, plugin, nil},
		{"admin write", http.MethodPut, admin, nil},
		{"anonymous write", http.MethodPatch, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			h := withFenceTerm(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				md, _ := metadata.FromOutgoingContext(r.Context())
				got = md.Get(kvserver.FenceTermMetadata)
			}))
			r := httptest.NewRequest(tt.method, "/api/v1/namespaces/default/pods", nil)
			if tt.user != nil {
				r = r.WithContext(request.WithUser(r.Context(), tt.user))
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if !slices.Equal(got, tt.want) {
				t.Errorf("fence term metadata %q, want %q", got, tt.want)
			}
		})
	}
}
