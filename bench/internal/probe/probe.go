// Package probe holds the readiness checks the benchmarks poll servers
// with: an HTTP GET that wants 200, and kube-apiserver's /readyz with a
// client config's identity.
package probe

import (
	"context"
	"fmt"
	"net/http"

	"k8s.io/client-go/rest"
)

// HTTPOK GETs url with hc and wants 200.
func HTTPOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// Readyz returns a check that GETs cfg's /readyz with cfg's identity and
// wants 200. close releases its idle connections.
func Readyz(cfg *rest.Config) (check func(context.Context) error, close func(), err error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("HTTP client for %s: %w", cfg.Host, err)
	}
	url := cfg.Host + "/readyz"
	return func(ctx context.Context) error { return HTTPOK(ctx, hc, url) }, hc.CloseIdleConnections, nil
}
