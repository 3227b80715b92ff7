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
// credentials) over TLS with this server's peer certificate. A request
// carries a token secret: the server token may do both, an agent token only
// obtain node credentials (see internal/join and core/agenttoken).
type supervisor struct {
	pkiDir string
	// secret is the server token's secret; gossipKey is derived from it.
	secret    string
	gossipKey []byte
	log       *slog.Logger
	// servers lists the cluster's live servers for joining agents; nil
	// answers none.
	servers func() []join.Server
	// nodes binds node names to keys and says which addresses a node may
	// claim; it and agentTokens need the local API server. Without one
	// (--disable-apiserver) only joining servers are served.
	nodes       *nodeIdentities
	agentTokens func(ctx context.Context, secret string) (bool, error)
}

// tokenKind is what a request's token may do.
type tokenKind int

const (
	kindNone   tokenKind = iota
	kindAgent            // node credentials only
	kindServer           // everything
)

func (k tokenKind) String() string {
	switch k {
	case kindAgent:
		return "agent"
	case kindServer:
		return "server"
	}
	return "none"
}

func (sv *supervisor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+join.ClusterSecretsPath, func(w http.ResponseWriter, r *http.Request) {
		if sv.authorize(w, r, kindServer) == kindNone {
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

// authorize checks the token secret a request presents and that it may do
// at least what least allows; it answers a refusal itself and returns
// kindNone.
func (sv *supervisor) authorize(w http.ResponseWriter, r *http.Request, least tokenKind) tokenKind {
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(sv.secret)) == 1 {
		return kindServer
	}
	kind := kindNone
	if got != "" && sv.agentTokens != nil {
		ok, err := sv.agentTokens(r.Context(), got)
		if err != nil {
			// Not a refusal: the joiner retries until the store answers.
			sv.log.Warn("cannot check an agent token yet", "remote", r.RemoteAddr, "err", err)
			http.Error(w, "cannot check the token yet: "+err.Error(), http.StatusServiceUnavailable)
			return kindNone
		}
		if ok {
			kind = kindAgent
		}
	}
	switch {
	case kind == kindNone:
		sv.log.Warn("refused a join: wrong token", "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "wrong token", http.StatusUnauthorized)
		return kindNone
	case kind < least:
		sv.log.Warn("refused an agent token on a server-only path", "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "an agent token may only obtain node credentials; joining a server needs the server token (DATA_DIR/join-token)", http.StatusForbidden)
		return kindNone
	}
	return kind
}

// nodeCredentials issues a node agent its client and kubelet serving
// certificates from the certificate requests it sends with a token, once
// the node name is bound to the request's client key and the serving
// certificate names only the node's own name and addresses.
func (sv *supervisor) nodeCredentials(w http.ResponseWriter, r *http.Request) {
	if sv.nodes == nil {
		http.Error(w, "this server runs no API server (--disable-apiserver) and cannot register nodes; ask another server", http.StatusServiceUnavailable)
		return
	}
	kind := sv.authorize(w, r, kindAgent)
	if kind == kindNone {
		return
	}
	var body join.NodeCredentialsRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if errs := validation.IsDNS1123Subdomain(body.NodeName); len(errs) > 0 {
		http.Error(w, fmt.Sprintf("node name %q: %s", body.NodeName, strings.Join(errs, "; ")), http.StatusBadRequest)
		return
	}
	req, err := pki.ParseNodeRequest(body.NodeName, body.ClientCSR, body.ServingCSR)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	log := sv.log.With("node", body.NodeName, "remote", r.RemoteAddr)
	status, err := sv.nodes.admit(r.Context(), req, body.RegisterTaints, kind == kindServer)
	if err != nil {
		log.Warn("refused node credentials", "err", err)
		http.Error(w, err.Error(), status)
		return
	}
	certs, err := req.Issue(sv.pkiDir, time.Now())
	if err != nil {
		log.Error("issuing node credentials", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	log.Info("issued node credentials", "token", kind.String())
	w.Header().Set("Content-Type", "application/json")
	resp := join.NodeCredentials{CACert: certs.CA, ClientCert: certs.Client, ServingCert: certs.Serving, GossipKey: sv.gossipKey}
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
