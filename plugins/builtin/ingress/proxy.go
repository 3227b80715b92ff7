package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"
)

// Proxy serves requests from the current Table. Set swaps the table in
// place: requests already routed finish on the backend they got, the
// listeners never restart.
type Proxy struct {
	table    atomic.Pointer[Table]
	redirect bool
	log      *slog.Logger
	rp       *httputil.ReverseProxy
	metrics  *Metrics
}

// NewProxy returns a proxy serving an empty table (every request 404).
// With redirect, a plain HTTP request for a host that has TLS is
// redirected to https. Its routes are observed in m (nil: no metrics).
func NewProxy(log *slog.Logger, redirect bool, m *Metrics) *Proxy {
	p := &Proxy{redirect: redirect, log: log, metrics: m}
	p.table.Store(Build(World{}))
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			// The first endpoint to try; the Host header stays the
			// client's. The transport takes the next endpoints on a retry.
			pr.Out.URL.Host = "backend"
			if sel, ok := selectionOf(pr.In.Context()); ok && len(sel.backend.Endpoints) > 0 {
				pr.Out.URL.Host = sel.endpoint(0)
			}
			pr.Out.Host = pr.In.Host
		},
		BufferPool:     &bufferPool{},
		Transport:      newTransport(),
		ErrorHandler:   p.upstreamError,
		ModifyResponse: modifyResponse,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

// Set makes t the table new requests are routed by.
func (p *Proxy) Set(t *Table) {
	p.metrics.bind(t)
	p.table.Store(t)
}

func modifyResponse(resp *http.Response) error {
	if s, ok := selectionOf(resp.Request.Context()); ok {
		modifyHeaders(resp.Header, s.respHeaders)
	}
	return nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := p.table.Load()
	if gp := t.gatewayPort(connDst(r.Context())); gp != nil {
		p.serveGateway(w, r, gp)
		return
	}
	if p.redirect && r.TLS == nil && t.certs.forHost(requestHost(r.Host)) != nil {
		http.Redirect(w, r, "https://"+requestHost(r.Host)+r.URL.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	rt := t.Route(r.Host, r.URL.Path)
	if rt == nil {
		p.metrics.unmatchedRequest()
		http.Error(w, fmt.Sprintf("404 no Ingress rule matches host %q path %q, and there is no default backend", requestHost(r.Host), r.URL.Path), http.StatusNotFound)
		return
	}
	st := newInflight(r.Context(), rt)
	if rt.obs != nil {
		w = st.record(w)
		defer st.done(time.Now())
	}
	b := rt.Backend
	if len(b.Endpoints) == 0 {
		rt.obs.upstreamError(reasonNoEndpoints)
		msg := "503 backend " + b.Name + " has no ready endpoints"
		if b.Problem != "" {
			msg = "503 " + b.Problem
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(st.to(b)))
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	sel, ok := selectionOf(r.Context())
	name := ""
	if ok {
		name = sel.backend.Name
		if !isDialError(err) { // a failed connect was counted when it happened
			sel.route.obs.upstreamError(reasonResponse)
		}
	}
	p.log.Debug("upstream error", "backend", name, "host", r.Host, "path", r.URL.Path, "err", err)
	http.Error(w, "502 backend "+name+" failed: "+err.Error(), http.StatusBadGateway)
}

// GetCertificate answers a TLS handshake from the current table.
func (p *Proxy) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	t := p.table.Load()
	if hello.Conn != nil {
		if gp := t.gatewayPort(originalDst(hello.Conn)); gp != nil {
			if c := gp.certificate(hello.ServerName); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("no certificate for %q on Gateway port %d", hello.ServerName, gp.port)
		}
	}
	return t.certs.choose(hello.ServerName)
}

// transport sends a request to one of its backend's endpoints, round
// robin; when connecting fails and the request is idempotent and has no
// body, it tries the next endpoint (at most three in all).
type transport struct {
	h1, h2c *http.Transport
}

func newTransport() *transport {
	dial := (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	h1 := &http.Transport{DialContext: dial, MaxIdleConns: 1024, MaxIdleConnsPerHost: 128,
		IdleConnTimeout: 90 * time.Second, ExpectContinueTimeout: time.Second}
	h2c := h1.Clone()
	h2c.Protocols = new(http.Protocols)
	h2c.Protocols.SetUnencryptedHTTP2(true)
	return &transport{h1: h1, h2c: h2c}
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	sel, ok := selectionOf(req.Context())
	if !ok || len(sel.backend.Endpoints) == 0 {
		return nil, errors.New("no backend chosen for the request")
	}
	rt, b := sel.route, sel.backend
	tr := t.h1
	if b.H2C {
		tr = t.h2c
	}
	attempts := 1
	if retriable(req) {
		attempts = min(len(b.Endpoints), 3)
	}
	var err error
	for i := range attempts {
		out := req // the reverse proxy's Rewrite set the first endpoint
		if i > 0 || req.URL.Host != sel.endpoint(0) {
			out = retryTo(req, sel.endpoint(i))
		}
		var resp *http.Response
		if resp, err = tr.RoundTrip(out); err == nil {
			return resp, nil
		}
		if !isDialError(err) || req.Context().Err() != nil {
			return nil, err
		}
		rt.obs.upstreamError(reasonConnect)
		if i+1 < attempts {
			rt.obs.upstreamError(reasonRetry)
		}
	}
	return nil, err
}

// retryTo is req sent to another endpoint: a RoundTripper leaves the
// request it was given as it was.
func retryTo(req *http.Request, endpoint string) *http.Request {
	out := *req
	u := *req.URL
	u.Host = endpoint
	out.URL = &u
	return &out
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retriable: an idempotent method without a body, which a failed connect
// never sent.
func retriable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}
