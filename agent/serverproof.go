package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/keelson/keelson/internal/join"
)

// apiServingCN is the common name of the API servers' serving certificate
// (core/pki); node serving certificates carry the node's name and the
// system:nodes organization instead.
const apiServingCN = "kube-apiserver"

// provenServers keeps, of the API endpoints a gossip member advertises, those
// that answer with an API server's serving certificate from the cluster CA.
// Any holder of the gossip key can advertise an `api` tag; only a server
// holds the key of a kube-apiserver certificate, so an endpoint is added to
// the failover list (and servers.json) only after this check. Endpoints the
// agent already knows (from a supervisor, or proven earlier) are kept as they
// are.
func (a *Agent) provenServers(ctx context.Context, advertised []join.Server) []join.Server {
	known := a.loadServers()
	var out []join.Server
	for _, s := range advertised {
		if slices.Contains(known, s) {
			out = append(out, s)
			continue
		}
		if err := proveAPIServer(ctx, a.creds.CAFile(), s.API); err != nil {
			a.log.Warn("ignoring a gossip member's API address: it did not prove an API server identity", "api", s.API, "err", err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// proveAPIServer makes a TLS handshake with addr and checks that it presents
// a kube-apiserver serving certificate signed by the CA in caFile.
func proveAPIServer(ctx context.Context, caFile, addr string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("reading the cluster CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("cluster CA %s holds no certificate", caFile)
	}
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: "127.0.0.1", // every API serving certificate names it (core/pki)
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			leaf := cs.PeerCertificates[0]
			if leaf.Subject.CommonName != apiServingCN || slices.Contains(leaf.Subject.Organization, "system:nodes") {
				return fmt.Errorf("certificate %q (organization %v) is not an API server's", leaf.Subject.CommonName, leaf.Subject.Organization)
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	if err != nil {
		var v *tls.CertificateVerificationError
		if errors.As(err, &v) {
			return fmt.Errorf("%s: %w", addr, v)
		}
		return fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return conn.Close()
}
