// Package credentials obtains and keeps a node agent's certificates: with the
// cluster's agent token it asks a server's supervisor port for a client
// certificate (the node's API identity, system:node:NAME) and a serving
// certificate for its kubelet API, and renews them before they expire. The
// private keys never leave the node: the supervisor signs requests.
//
// The client key is made once and kept: the cluster binds the node's name to
// it on first contact and refuses the name to any other key, so renewals
// reuse it. The serving certificate names only the node's name and its IP,
// all a server signs for an agent. The answer also carries the gossip key,
// kept beside the certificates (gossip.key) for the node's gossip member.
package credentials

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/join"
	"github.com/keelson/keelson/internal/nodeproof"
)

// Options says which node asks and where.
type Options struct {
	// Dir holds the certificates and keys.
	Dir string
	// RegisterTaints go with the node's first request: the supervisor sets
	// them on the Node it creates to hold the name.
	RegisterTaints []v1.Taint
	// NodeName is the node's name: the client certificate's CN is
	// system:node:NodeName.
	NodeName string
	// Token is the cluster's agent token.
	Token join.Token
	// TokenFile, when set, holds the token and is read again before each
	// request, so renewals use a rotated token written into it without a
	// restart.
	TokenFile string
	// Supervisors are host:port of servers' supervisor ports, tried in order.
	Supervisors func() []string
	// ServingIPs and ServingDNSNames must be in the serving certificate:
	// kube-apiserver dials the node by one of them and verifies it.
	ServingIPs      []net.IP
	ServingDNSNames []string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives issue and renewal events.
	Logger *slog.Logger
	// OnServers, when set, learns the cluster's servers from a supervisor's
	// answer.
	OnServers func([]join.Server)
}

// Store holds a node's current certificates. Its files are what client-go
// reads (and reloads) for the node's API identity; the serving certificate is
// served from memory so that a renewal takes effect without a restart.
type Store struct {
	opts    Options
	mu      sync.RWMutex
	serving *tls.Certificate
	expiry  time.Time // the earlier NotAfter of the two leaves
	issued  time.Time // the later NotBefore
}

// Paths of a Store's files.
func (s *Store) CAFile() string        { return filepath.Join(s.opts.Dir, "ca.crt") }
func (s *Store) ClientCert() string    { return filepath.Join(s.opts.Dir, "client.crt") }
func (s *Store) ClientKey() string     { return filepath.Join(s.opts.Dir, "client.key") }
func (s *Store) servingCert() string   { return filepath.Join(s.opts.Dir, "serving.crt") }
func (s *Store) servingKey() string    { return filepath.Join(s.opts.Dir, "serving.key") }
func (s *Store) gossipKeyFile() string { return filepath.Join(s.opts.Dir, "gossip.key") }

// GossipKey returns the cluster's gossip encryption key, as the last
// supervisor answer carried it.
func (s *Store) GossipKey() ([]byte, error) {
	b, err := os.ReadFile(s.gossipKeyFile())
	if err != nil {
		return nil, fmt.Errorf("credentials: gossip key: %w", err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("credentials: gossip key %s: %d bytes, want 32", s.gossipKeyFile(), len(b))
	}
	return b, nil
}

// Ensure returns a Store with valid certificates: the stored ones when they
// still fit the node and are not past two thirds of their lifetime, else new
// ones from a supervisor, retried until one answers or ctx ends. A token
// that the cluster refuses is an error at once.
func Ensure(ctx context.Context, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	s := &Store{opts: opts}
	reason := s.load()
	if reason == "" {
		return s, nil
	}
	opts.Logger.Info("requesting node credentials", "node", opts.NodeName, "reason", reason)
	wait := 500 * time.Millisecond
	for {
		err := s.request(ctx)
		if err == nil {
			return s, nil
		}
		if join.Refused(err) {
			return nil, err
		}
		opts.Logger.Warn("waiting for a server to issue node credentials; retrying", "servers", opts.Supervisors(), "retry_in", wait, "err", err, "check", join.UnreachableHint(err, "--server"))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("credentials: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// load reads the stored certificates and reports why they cannot be used
// ("" when they can).
func (s *Store) load() string {
	ca, err := os.ReadFile(s.CAFile())
	if err != nil {
		return "no stored credentials"
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return "stored CA unreadable"
	}
	if s.opts.Token.CAHash != "" && caHash(ca) != s.opts.Token.CAHash {
		return "stored CA is not the token's cluster"
	}
	client, err := tls.LoadX509KeyPair(s.ClientCert(), s.ClientKey())
	if err != nil {
		return "client certificate unreadable"
	}
	serving, err := tls.LoadX509KeyPair(s.servingCert(), s.servingKey())
	if err != nil {
		return "serving certificate unreadable"
	}
	if _, err := s.GossipKey(); err != nil {
		return "no gossip key"
	}
	cl, sv := client.Leaf, serving.Leaf
	if cl.Subject.CommonName != "system:node:"+s.opts.NodeName {
		return "client certificate is for " + cl.Subject.CommonName
	}
	for _, ip := range s.opts.ServingIPs {
		if !slices.ContainsFunc(sv.IPAddresses, ip.Equal) {
			return "serving certificate lacks " + ip.String()
		}
	}
	for _, d := range s.opts.ServingDNSNames {
		if !slices.Contains(sv.DNSNames, d) {
			return "serving certificate lacks " + d
		}
	}
	for _, c := range []*x509.Certificate{cl, sv} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: s.opts.Now()}); err != nil {
			return "stored certificate does not verify: " + err.Error()
		}
	}
	s.set(&serving, cl, sv)
	if s.needsRenewal() {
		return "certificates past two thirds of their lifetime"
	}
	return ""
}

func (s *Store) set(serving *tls.Certificate, leaves ...*x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serving = serving
	s.expiry, s.issued = time.Time{}, time.Time{}
	for _, l := range leaves {
		if s.expiry.IsZero() || l.NotAfter.Before(s.expiry) {
			s.expiry = l.NotAfter
		}
		if l.NotBefore.After(s.issued) {
			s.issued = l.NotBefore
		}
	}
}

func (s *Store) needsRenewal() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	life := s.expiry.Sub(s.issued)
	return s.opts.Now().After(s.issued.Add(life * 2 / 3))
}

// request asks the supervisors in turn for new certificates and stores them.
func (s *Store) request(ctx context.Context) error {
	tok, err := s.token()
	if err != nil {
		return err
	}
	client, err := join.PinnedClient(tok)
	if err != nil {
		return err
	}
	clientKey, err := s.clientSigner()
	if err != nil {
		return err
	}
	clientCSR, err := newCSR(clientKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + s.opts.NodeName}})
	if err != nil {
		return err
	}
	servingKey, err := newKey()
	if err != nil {
		return err
	}
	servingCSR, err := newCSR(servingKey, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: s.opts.NodeName},
		DNSNames:    s.opts.ServingDNSNames,
		IPAddresses: s.opts.ServingIPs,
	})
	if err != nil {
		return err
	}
	req := join.NodeCredentialsRequest{NodeName: s.opts.NodeName, ClientCSR: clientCSR, ServingCSR: servingCSR, RegisterTaints: s.opts.RegisterTaints}
	var errs []error
	for _, addr := range s.opts.Supervisors() {
		var got join.NodeCredentials
		err := join.Call(ctx, client, addr, http.MethodPost, join.NodeCredentialsPath, tok, req, &got)
		if join.Refused(err) {
			return err
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(got.GossipKey) != 32 {
			return fmt.Errorf("credentials: %s sent no gossip key (a server older than this agent?)", addr)
		}
		if err := s.store(got, clientKey, servingKey); err != nil {
			return err
		}
		if s.opts.OnServers != nil {
			s.opts.OnServers(got.Servers)
		}
		s.opts.Logger.Info("received node credentials", "node", s.opts.NodeName, "from", addr)
		return nil
	}
	if len(errs) == 0 {
		return errors.New("credentials: no server to ask")
	}
	return errors.Join(errs...)
}

func (s *Store) store(got join.NodeCredentials, clientKey, servingKey crypto.Signer) error {
	files := []struct {
		path string
		data func() ([]byte, error)
		mode os.FileMode
	}{
		{s.CAFile(), func() ([]byte, error) { return got.CACert, nil }, 0o644},
		{s.ClientKey(), func() ([]byte, error) { return encodeKey(clientKey) }, 0o600},
		{s.ClientCert(), func() ([]byte, error) { return got.ClientCert, nil }, 0o644},
		{s.servingKey(), func() ([]byte, error) { return encodeKey(servingKey) }, 0o600},
		{s.servingCert(), func() ([]byte, error) { return got.ServingCert, nil }, 0o644},
		{s.gossipKeyFile(), func() ([]byte, error) { return got.GossipKey, nil }, 0o600},
	}
	for _, f := range files {
		data, err := f.data()
		if err != nil {
			return err
		}
		if err := writeAtomic(f.path, data, f.mode); err != nil {
			return err
		}
	}
	if reason := s.load(); reason != "" {
		return fmt.Errorf("credentials: the issued certificates are unusable: %s", reason)
	}
	return nil
}

// CAPool returns the cluster CA as a pool.
func (s *Store) CAPool() (*x509.CertPool, error) {
	ca, err := os.ReadFile(s.CAFile())
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return pool, nil
}

// GetServingCertificate is a tls.Config.GetCertificate serving the current
// kubelet certificate.
func (s *Store) GetServingCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.serving, nil
}

// RenewLoop renews the certificates once they pass two thirds of their
// lifetime, checking every interval until ctx ends.
func (s *Store) RenewLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.needsRenewal() {
			continue
		}
		if err := s.request(ctx); err != nil {
			s.opts.Logger.Warn("renewing node credentials", "err", err)
		}
	}
}

// token is the agent token: TokenFile's current content, else Token.
func (s *Store) token() (join.Token, error) {
	if s.opts.TokenFile == "" {
		return s.opts.Token, nil
	}
	b, err := os.ReadFile(s.opts.TokenFile)
	if err != nil {
		return join.Token{}, fmt.Errorf("credentials: token file (--token-file): %w", err)
	}
	tok, err := join.ParseToken(string(b))
	if err != nil {
		return join.Token{}, fmt.Errorf("credentials: token file (--token-file) %s: %w", s.opts.TokenFile, err)
	}
	return tok, nil
}

// clientSigner is the node's stored client key, or a new one for a node
// that has none yet: the cluster knows the node by this key.
func (s *Store) clientSigner() (crypto.Signer, error) {
	b, err := os.ReadFile(s.ClientKey())
	if errors.Is(err, os.ErrNotExist) {
		return newKey()
	}
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("credentials: %s holds no PEM key; restore it, or remove it and delete this node's Node object so the cluster accepts a new key", s.ClientKey())
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	signer, ok := key.(crypto.Signer)
	if err != nil || !ok {
		return nil, fmt.Errorf("credentials: %s is not a PKCS#8 private key (%v); restore it, or remove it and delete this node's Node object so the cluster accepts a new key", s.ClientKey(), err)
	}
	return signer, nil
}

func newKey() (crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("credentials: generate key: %w", err)
	}
	return key, nil
}

func newCSR(key crypto.Signer, tmpl *x509.CertificateRequest) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("credentials: certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("credentials: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func caHash(caPEM []byte) string {
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return ""
	}
	return join.CAHash(block.Bytes)
}

// writeAtomic replaces path so a crash leaves the old or the new content.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("credentials: write %s: %w", path, err)
	}
	return nil
}

// GossipProof returns the tag proving that this agent holds the key its node
// name is bound to, gossiping at addr (internal/nodeproof).
func (s *Store) GossipProof(addr string) (string, error) {
	signer, err := s.clientSigner()
	if err != nil {
		return "", err
	}
	key, ok := signer.(*ecdsa.PrivateKey)
	if !ok {
		return "", fmt.Errorf("credentials: %s is not an ECDSA key; the gossip proof needs one", s.ClientKey())
	}
	return nodeproof.Sign(key, s.opts.NodeName, addr)
}
