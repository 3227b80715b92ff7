package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"

	"google.golang.org/grpc/metadata"
	"k8s.io/apiserver/pkg/endpoints/request"

	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/keelson/keelson/core/kvserver"
	"github.com/keelson/keelson/core/pki"
)

// TermFenceName is the admission plugin that fences plugins of a deposed
// leader. It is on by default; it only ever looks at plugin identities.
const TermFenceName = "KeelsonTermFence"

// termFence refuses writes from a plugin identity whose raft term is older
// than the term this server knows. A leader that loses leadership stops its
// plugins, but not instantly, and a partitioned one may not know yet: its
// plugins keep their old identity, and every server that has heard of the
// new term refuses their writes. A plugin of the new leader carries the new
// term and passes.
//
// The check runs before the write is proposed to raft, so a write admitted
// an instant before the term changes can still commit; what the fence
// guarantees is that once a server knows the new term, no write of an older
// plugin generation passes it.
type termFence struct {
	*admission.Handler
	currentTerm func() uint64
}

func newTermFence(currentTerm func() uint64) *termFence {
	return &termFence{
		Handler:     admission.NewHandler(admission.Create, admission.Update, admission.Delete, admission.Connect),
		currentTerm: currentTerm,
	}
}

// register adds the fence to kube-apiserver's admission plugins, first in
// order so a stale write is refused before any other plugin acts on it.
func (f *termFence) register(plugins *admission.Plugins, order *[]string) {
	plugins.Register(TermFenceName, func(io.Reader) (admission.Interface, error) { return f, nil })
	*order = slices.Insert(*order, 0, TermFenceName)
}

// Validate implements admission.ValidationInterface.
func (f *termFence) Validate(_ context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	return f.check(a.GetUserInfo(), func(err error) error { return admission.NewForbidden(a, err) })
}

// check is Validate without the request plumbing.
func (f *termFence) check(u user.Info, forbid func(error) error) error {
	term, plugin, found := pluginTerm(u)
	if !plugin {
		return nil
	}
	if !found {
		return forbid(fmt.Errorf("plugin identity %s carries no raft term (group %sN); only the plugin host issues plugin identities", u.GetName(), pki.TermGroupPrefix))
	}
	if cur := f.currentTerm(); term < cur {
		return forbid(fmt.Errorf("plugin %s was started by the leader of raft term %d, but the cluster is in term %d: "+
			"that leader was deposed and the new leader runs its own copy of the plugin", u.GetName(), term, cur))
	}
	return nil
}

// pluginTerm returns the raft term a plugin identity carries: plugin says
// whether u is a plugin identity at all, found whether it carries a term.
func pluginTerm(u user.Info) (term uint64, plugin, found bool) {
	if u == nil || !slices.Contains(u.GetGroups(), pki.PluginsGroup) {
		return 0, false, false
	}
	for _, g := range u.GetGroups() {
		if t, ok := pki.ParseTermGroup(g); ok {
			term, found = t, true
		}
	}
	return term, true, found
}

// withFenceTerm hands a plugin's term on to the store with each write the
// plugin sends: the term travels in the gRPC metadata of kube-apiserver's
// etcd requests, which are made with the request's context, and the store
// commits the write only in that term (core/kvserver/fence.go). The
// admission fence refuses a stale plugin early; this makes the refusal
// exact where admission cannot be: for a write admitted an instant before
// its server hears of a new leader. It wraps kube-apiserver's handler
// inside authentication, so the user is known.
func withFenceTerm(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if u, ok := request.UserFrom(r.Context()); ok {
				if term, _, found := pluginTerm(u); found {
					ctx := metadata.AppendToOutgoingContext(r.Context(), kvserver.FenceTermMetadata, strconv.FormatUint(term, 10))
					r = r.WithContext(ctx)
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}
