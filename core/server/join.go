package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
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
)

// A join token is "K10<sha256 of the cluster CA>::<secret>", as k3s does: the
// hash lets a joining server pin the cluster it talks to before it trusts
// anything, the secret proves to the cluster that the joiner may join (and
// keys the gossip encryption).
const tokenPrefix = "K10"

// JoinToken is a parsed --token.
type JoinToken struct {
	CAHash string // empty for a bare secret
	Secret string
}

// ParseToken accepts the full K10 form or a bare secret.
func ParseToken(s string) (JoinToken, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		if s == "" {
			return JoinToken{}, errors.New("token (--token): empty")
		}
		return JoinToken{Secret: s}, nil
	}
	hash, secret, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "::")
	if _, err := hex.DecodeString(hash); !ok || err != nil || len(hash) != 64 || secret == "" {
		return JoinToken{}, errors.New("token (--token): malformed; expected K10<64 hex digits>::<secret> as printed by the first server")
	}
	return JoinToken{CAHash: hash, Secret: secret}, nil
}

// String renders the full token.
func (t JoinToken) String() string {
	if t.CAHash == "" {
		return t.Secret
	}
	return tokenPrefix + t.CAHash + "::" + t.Secret
}

// supervisor serves joining servers over TLS with this server's peer
// certificate, authenticated by the token secret.
type supervisor struct {
	pkiDir string
	secret string
	log    *slog.Logger
}

const clusterSecretsPath = "/v1/cluster-secrets"

// errWrongCluster marks a join refused for a reason retrying cannot fix: the
// token's secret or CA hash does not match the cluster.
var errWrongCluster = errors.New("wrong token or wrong cluster")

func (sv *supervisor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+clusterSecretsPath, func(w http.ResponseWriter, r *http.Request) {
		got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(sv.secret)) != 1 {
			sv.log.Warn("refused a join: wrong token", "remote", r.RemoteAddr)
			http.Error(w, "wrong token", http.StatusUnauthorized)
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
	return mux
}

// serveSupervisor serves the supervisor endpoint on l until ctx ends. The TLS
// chain includes the CA so a joiner can check it against its token's hash.
func (sv *supervisor) serve(ctx context.Context, l net.Listener, b *pki.Bundle) error {
	pair, err := tls.LoadX509KeyPair(b.Peer.CertFile, b.Peer.KeyFile)
	if err != nil {
		return fmt.Errorf("supervisor certificate: %w", err)
	}
	ca, err := tls.LoadX509KeyPair(b.CA.CertFile, b.CA.KeyFile)
	if err != nil {
		return fmt.Errorf("supervisor CA: %w", err)
	}
	pair.Certificate = append(pair.Certificate, ca.Certificate[0])
	srv := &http.Server{
		Handler:           sv.handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
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
func fetchClusterSecrets(ctx context.Context, addrs []string, tok JoinToken) (*pki.ClusterSecrets, error) {
	if tok.CAHash == "" {
		return nil, errors.New("token (--token): joining needs the full token (K10<ca hash>::<secret>) printed by the first server, so the cluster's CA can be verified")
	}
	pinned := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) < 2 {
			return errors.New("server sent no CA certificate")
		}
		sum := sha256.Sum256(raw[len(raw)-1])
		if hex.EncodeToString(sum[:]) != tok.CAHash {
			return errors.New("server's CA does not match the token's CA hash: wrong token or wrong cluster")
		}
		ca, err := x509.ParseCertificate(raw[len(raw)-1])
		if err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool})
		return err
	}
	client := &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			// The chain is verified against the pinned CA above.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: pinned, MinVersion: tls.VersionTLS12}, //nolint:gosec
		},
	}
	var errs []error
	for _, addr := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+clusterSecretsPath, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok.Secret)
		resp, err := client.Do(req)
		if err != nil {
			if strings.Contains(err.Error(), "does not match the token") {
				err = fmt.Errorf("%w: %v", errWrongCluster, err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: reading the answer: %w", addr, err))
			continue
		}
		if resp.StatusCode == http.StatusUnauthorized {
			errs = append(errs, fmt.Errorf("%s: %w: the server refused the token's secret", addr, errWrongCluster))
			continue
		}
		if resp.StatusCode != http.StatusOK {
			errs = append(errs, fmt.Errorf("%s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body))))
			continue
		}
		var s pki.ClusterSecrets
		if err := json.Unmarshal(body, &s); err != nil {
			errs = append(errs, fmt.Errorf("%s: bad answer: %w", addr, err))
			continue
		}
		return &s, nil
	}
	return nil, fmt.Errorf("fetching cluster secrets to join: %w", errors.Join(errs...))
}
