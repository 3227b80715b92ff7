package ingress

import (
	"context"
	"net/http"
	"sync"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// routeKeyT keys the request's *selection in its context.
type routeKeyT struct{}

// selection is what a request was routed to: its route (the metrics
// unit), the backend chosen, the endpoint to try first (an index, round
// robin) and, from a Gateway route, the response header filter.
type selection struct {
	route       *Route
	backend     *Backend
	first       uint64
	respHeaders *gatewayv1.HTTPHeaderFilter
}

// endpoint is the endpoint of the i-th attempt; the backend has at least
// one.
func (s *selection) endpoint(i int) string {
	eps := s.backend.Endpoints
	return eps[(s.first+uint64(i))%uint64(len(eps))]
}

// inflight is the per-request state of a routed request, one allocation:
// the context that carries its selection to the transport and to
// ModifyResponse (it is the request's context with one more value), and
// the status recorder of its metrics.
type inflight struct {
	parent context.Context
	sel    selection
	rec    statusRecorder
}

// newInflight routes a request with context ctx to rt.
func newInflight(ctx context.Context, rt *Route) *inflight {
	return &inflight{parent: ctx, sel: selection{route: rt}}
}

// record wraps w to record the status code for the route's metrics; done
// counts the answer.
func (s *inflight) record(w http.ResponseWriter) http.ResponseWriter {
	if s.sel.route.obs == nil {
		return w
	}
	s.rec.ResponseWriter = w
	return &s.rec
}

// done counts the answer of a request routed at start.
func (s *inflight) done(start time.Time) {
	s.sel.route.obs.done(&s.rec, start)
}

// to picks backend b, its first endpoint round robin.
func (s *inflight) to(b *Backend) *inflight {
	s.sel.backend = b
	s.sel.first = b.next.Add(1)
	return s
}

func (s *inflight) Deadline() (time.Time, bool) { return s.parent.Deadline() }
func (s *inflight) Done() <-chan struct{}       { return s.parent.Done() }
func (s *inflight) Err() error                  { return s.parent.Err() }

func (s *inflight) Value(key any) any {
	if _, ok := key.(routeKeyT); ok {
		return &s.sel
	}
	return s.parent.Value(key)
}

func selectionOf(ctx context.Context) (*selection, bool) {
	s, ok := ctx.Value(routeKeyT{}).(*selection)
	return s, ok && s.backend != nil
}

// copyBufSize is the size of the buffers a response body is copied
// through, httputil.ReverseProxy's own.
const copyBufSize = 32 << 10

// bufferPool lends the reverse proxy its copy buffers, which it would
// otherwise allocate for every response: by far the largest allocation of
// a proxied request. It holds array pointers, so a Put does not allocate.
type bufferPool struct{ p sync.Pool }

func (bp *bufferPool) Get() []byte {
	if a, ok := bp.p.Get().(*[copyBufSize]byte); ok {
		return a[:]
	}
	return new([copyBufSize]byte)[:]
}

func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= copyBufSize {
		bp.p.Put((*[copyBufSize]byte)(b[:copyBufSize]))
	}
}
