package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// readyPollInterval is how often /readyz is asked during startup; startup takes
// seconds, so a finer interval would only add load.
const readyPollInterval = 100 * time.Millisecond

// readyProbe asks the API server's /readyz with the admin identity, since
// anonymous requests are refused.
type readyProbe struct {
	url    string
	client *http.Client
}

func newReadyProbe(cfg Config) (*readyProbe, error) {
	b := cfg.Bundle
	caPEM, err := os.ReadFile(b.CA.CertFile)
	if err != nil {
		return nil, fmt.Errorf("apiserver: read CA %s: %w", b.CA.CertFile, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("apiserver: no certificate in CA file %s", b.CA.CertFile)
	}
	admin, err := tls.LoadX509KeyPair(b.Admin.CertFile, b.Admin.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("apiserver: load admin client certificate %s: %w", b.Admin.CertFile, err)
	}
	return &readyProbe{
		url: "https://" + net.JoinHostPort(LocalHost(cfg.BindAddress), strconv.Itoa(cfg.SecurePort)) + "/readyz",
		client: &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12},
				Proxy:           nil, // loopback; never through an environment proxy
			},
		},
	}, nil
}

// LocalHost is the address a client on this machine uses to reach a server bound
// to bind: the bind address itself, or loopback when bound to all addresses.
func LocalHost(bind string) string {
	ip := net.ParseIP(bind)
	switch {
	case ip == nil || !ip.IsUnspecified():
		return bind
	case ip.To4() != nil:
		return "127.0.0.1"
	default:
		return "::1"
	}
}

// wait polls until /readyz answers 200 and returns the time since start, or
// returns false when ctx ends first.
func (p *readyProbe) wait(ctx context.Context, start time.Time) (time.Duration, bool) {
	defer p.client.CloseIdleConnections()
	t := time.NewTicker(readyPollInterval)
	defer t.Stop()
	for {
		if p.ready(ctx) {
			return time.Since(start), true
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-t.C:
		}
	}
}

func (p *readyProbe) ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return false
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}
