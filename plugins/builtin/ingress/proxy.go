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
}

// NewProxy returns a proxy serving an empty table (every request 404).
// With redirect, a plain HTTP request for a host that has TLS is
// redirected to https.
func NewProxy(log *slog.Logger, redirect bool) *Proxy {
	p := &Proxy{redirect: redirect, log: log}
	p.table.Store(Build(World{}))
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.URL.Scheme = "http"
			// The transport replaces the host with an endpoint; the Host
			// header stays the client's.
			pr.Out.URL.Host = "backend"
			pr.Out.Host = pr.In.Host
		},
		Transport:    newTransport(),
		ErrorHandler: p.upstreamError,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

// Set makes t the table new requests are routed by.
func (p *Proxy) Set(t *Table) { p.table.Store(t) }

type backendKeyT struct{}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := p.table.Load()
	if p.redirect && r.TLS == nil && t.certs.forHost(requestHost(r.Host)) != nil {
		http.Redirect(w, r, "https://"+requestHost(r.Host)+r.URL.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	b := t.Route(r.Host, r.URL.Path)
	if b == nil {
		http.Error(w, fmt.Sprintf("404 no Ingress rule matches host %q path %q, and there is no default backend", requestHost(r.Host), r.URL.Path), http.StatusNotFound)
		return
	}
	if len(b.Endpoints) == 0 {
		msg := "503 backend " + b.Name + " has no ready endpoints"
		if b.Problem != "" {
			msg = "503 " + b.Problem
		}
		http.Error(w, msg, http.StatusServiceUnavailable)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKeyT{}, b)))
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	b, _ := r.Context().Value(backendKeyT{}).(*Backend)
	name := ""
	if b != nil {
		name = b.Name
	}
	p.log.Debug("upstream error", "backend", name, "host", r.Host, "path", r.URL.Path, "err", err)
	http.Error(w, "502 backend "+name+" failed: "+err.Error(), http.StatusBadGateway)
}

// GetCertificate answers a TLS handshake from the current table.
func (p *Proxy) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.table.Load().certs.choose(hello.ServerName)
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
	b, ok := req.Context().Value(backendKeyT{}).(*Backend)
	if !ok || len(b.Endpoints) == 0 {
		return nil, errors.New("no backend chosen for the request")
	}
	rt := t.h1
	if b.H2C {
		rt = t.h2c
	}
	attempts := 1
	if retriable(req) {
		attempts = min(len(b.Endpoints), 3)
	}
	start := b.next.Add(1)
	var err error
	for i := range attempts {
		out := *req
		u := *req.URL
		u.Host = b.Endpoints[(start+uint64(i))%uint64(len(b.Endpoints))]
		out.URL = &u
		var resp *http.Response
		if resp, err = rt.RoundTrip(&out); err == nil {
			return resp, nil
		}
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" || req.Context().Err() != nil {
			return nil, err
		}
	}
	return nil, err
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
