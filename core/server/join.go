package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/join"
	"k8s.io/apimachinery/pkg/util/validation"
)

// supervisor serves joining servers (cluster secrets) and node agents (node
// credentials) over TLS with this server's peer certificate, authenticated by
// the token secret.
type supervisor struct {
	pkiDir string
	secret string
	log    *slog.Logger
	// servers lists the cluster's live servers for joining agents; nil
	// answers none.
	servers func() []join.Server
}

func (sv *supervisor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+join.ClusterSecretsPath, func(w http.ResponseWriter, r *http.Request) {
		if !sv.authorized(w, r) {
			return
		}
		secrets, err := pki.ExportCluster(sv.pkiDir)
		if err != nil {
			sv.log.Error("exporting cluster secrets", "err", err)
			http.Error(w, "cluster secrets unavailable", http.StatusInternalServerError)
			return
		}
		sv.log.Info("sent cluster secrets to a joining server", "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(secrets)
	})
	mux.HandleFunc("POST "+join.NodeCredentialsPath, sv.nodeCredentials)
	return mux
}

// authorized checks the token secret a joiner presents.
func (sv *supervisor) authorized(w http.ResponseWriter, r *http.Request) bool {
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(sv.secret)) != 1 {
		sv.log.Warn("refused a join: wrong token", "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "wrong token", http.StatusUnauthorized)
		return false
	}
	return true
}

// nodeCredentials issues a node agent its client and kubelet serving
// certificates from the certificate requests it sends with the token.
func (sv *supervisor) nodeCredentials(w http.ResponseWriter, r *http.Request) {
	if !sv.authorized(w, r) {
		return
	}
	var req join.NodeCredentialsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		http.Error(w, fmt.Sprintf("node name %q: %s", req.NodeName, strings.Join(errs, "; ")), http.StatusBadRequest)
		return
	}
	certs, err := pki.IssueNodeCertificates(sv.pkiDir, req.NodeName, req.ClientCSR, req.ServingCSR, time.Now())
	if err != nil {
		sv.log.Warn("refused node credentials", "node", req.NodeName, "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sv.log.Info("issued node credentials", "node", req.NodeName, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	resp := join.NodeCredentials{CACert: certs.CA, ClientCert: certs.Client, ServingCert: certs.Serving}
	if sv.servers != nil {
		resp.Servers = sv.servers()
	}
	json.NewEncoder(w).Encode(resp)
}

// serveSupervisor serves the supervisor endpoint on l until ctx ends. The TLS
// chain includes the CA so a joiner can check it against its token's hash;
// the peer certificate is re-read when it is renewed.
func (sv *supervisor) serve(ctx context.Context, l net.Listener, b *pki.Bundle) error {
	pair, err := pki.NewCertReloader(b.Peer, b.CA.CertFile)
	if err != nil {
		return fmt.Errorf("supervisor certificate: %w", err)
	}
	srv := &http.Server{
		Handler:           sv.handler(),
		TLSConfig:         &tls.Config{GetCertificate: pair.GetCertificate, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(sv.log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("supervisor on %s: %w", l.Addr(), err)
	}
	return nil
}

// fetchClusterSecrets asks the servers at addrs (host:port of their
// supervisor) for the cluster secrets, trusting only a server whose CA
// matches the token's hash.
func fetchClusterSecrets(ctx context.Context, addrs []string, tok join.Token) (*pki.ClusterSecrets, error) {
	client, err := join.PinnedClient(tok)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range addrs {
		var s pki.ClusterSecrets
		if err := join.Call(ctx, client, addr, http.MethodGet, join.ClusterSecretsPath, tok, nil, &s); err != nil {
			errs = append(errs, err)
			continue
		}
		return &s, nil
	}
	return nil, fmt.Errorf("fetching cluster secrets to join: %w", errors.Join(errs...))
}
