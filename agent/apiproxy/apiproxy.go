// Package apiproxy is the agent's way to every server: a TCP proxy on a
// loopback port that forwards each connection to the server it last reached
// and, when that one stops answering, to the next it knows. Clients speak
// TLS through it to the servers, whose certificates name 127.0.0.1, so the
// agent keeps working when the server it first talked to goes away.
package apiproxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// dialTimeout bounds the attempt to reach one server.
const dialTimeout = 3 * time.Second

// Proxy forwards loopback connections to a live server.
type Proxy struct {
	l   net.Listener
	log *slog.Logger

	mu      sync.Mutex
	servers []string // host:port, the one in use first
}

// Listen opens the proxy's loopback port; servers are host:port of API
// servers, tried in order.
func Listen(servers []string, log *slog.Logger) (*Proxy, error) {
	if len(servers) == 0 {
		return nil, errors.New("apiproxy: no server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &Proxy{l: l, log: log, servers: slices.Clone(servers)}, nil
}

// URL is the HTTPS URL clients use.
func (p *Proxy) URL() string { return "https://" + p.l.Addr().String() }

// Servers lists the known servers, the one in use first.
func (p *Proxy) Servers() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.servers)
}

// SetServers replaces the known servers; the one in use stays first while
// it is still listed.
func (p *Proxy) SetServers(servers []string) {
	if len(servers) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.servers[0]
	next := []string{}
	if slices.Contains(servers, cur) {
		next = append(next, cur)
	}
	for _, s := range servers {
		if !slices.Contains(next, s) {
			next = append(next, s)
		}
	}
	p.servers = next
}

// Serve forwards connections until ctx ends.
func (p *Proxy) Serve(ctx context.Context) {
	go func() {
		<-ctx.Done()
		p.l.Close()
	}()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(ctx, c)
	}
}

func (p *Proxy) forward(ctx context.Context, c net.Conn) {
	defer c.Close()
	up, err := p.dial(ctx)
	if err != nil {
		p.log.Warn("no API server reachable", "servers", p.Servers(), "err", err)
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	select {
	case <-done:
		<-done
	case <-ctx.Done():
	}
}

func closeWrite(c net.Conn) {
	if t, ok := c.(*net.TCPConn); ok {
		_ = t.CloseWrite()
	}
}

// dial reaches the server in use or, failing that, the next ones in turn;
// the first that answers becomes the one in use.
func (p *Proxy) dial(ctx context.Context) (net.Conn, error) {
	var errs []error
	for _, s := range p.Servers() {
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.DialContext(ctx, "tcp", s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.mu.Lock()
		if p.servers[0] != s {
			p.log.Info("switched API server", "to", s, "from", p.servers[0])
			i := slices.Index(p.servers, s)
			if i > 0 {
				p.servers = append(append([]string{s}, p.servers[:i]...), p.servers[i+1:]...)
			}
		}
		p.mu.Unlock()
		return c, nil
	}
	return nil, errors.Join(errs...)
}
