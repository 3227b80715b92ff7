// Package security plays the attacker against real keelson servers with
// only what a worker node holds: its agent token, its node credentials and
// the gossip key. It checks the trust boundaries the README's Security
// section states.
package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/agenttoken"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/join"
)

// Supervisor is a server's supervisor port as a joiner sees it.
type Supervisor struct {
	Addr string
}

// SupervisorOf is the supervisor port of s.
func SupervisorOf(s *harness.Server) Supervisor {
	return Supervisor{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.SupervisorPort()))}
}

// ReadToken parses the token in file.
func ReadToken(t testing.TB, file string) join.Token {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := join.ParseToken(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ClusterSecrets asks for the cluster's CA and signing keys with tok.
func (s Supervisor) ClusterSecrets(t testing.TB, tok join.Token) (*pki.ClusterSecrets, error) {
	t.Helper()
	client, err := join.PinnedClient(tok)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out pki.ClusterSecrets
	err = join.Call(ctx, client, s.Addr, http.MethodGet, join.ClusterSecretsPath, tok, nil, &out)
	return &out, err
}

// NodeCredentials asks for a node's certificates with tok: a client
// certificate for key and a serving certificate for dns and ips.
func (s Supervisor) NodeCredentials(t testing.TB, tok join.Token, name string, key *ecdsa.PrivateKey, dns []string, ips ...string) (*join.NodeCredentials, error) {
	t.Helper()
	client, err := join.PinnedClient(tok)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []net.IP
	for _, ip := range ips {
		addrs = append(addrs, net.ParseIP(ip))
	}
	req := join.NodeCredentialsRequest{
		NodeName:   name,
		ClientCSR:  CSR(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + name}}),
		ServingCSR: CSR(t, NewKey(t), &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: dns, IPAddresses: addrs}),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out join.NodeCredentials
	err = join.Call(ctx, client, s.Addr, http.MethodPost, join.NodeCredentialsPath, tok, req, &out)
	return &out, err
}

// NewKey is a fresh node key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// CSR is a PEM certificate request signed by key.
func CSR(t testing.TB, key *ecdsa.PrivateKey, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func refused(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: granted, want refused", what)
	} else if !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want a refusal containing %q", what, err, want)
	}
}

// TestAgentTokenIsNotClusterRoot: a worker's agent token obtains its own
// node's credentials and nothing more: no cluster secret, no certificate for
// another node's name, a server's name or a server's addresses, and after a
// rotation not even that.
func TestAgentTokenIsNotClusterRoot(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{NodeName: "sec-server"})
	sup := SupervisorOf(s)
	agentTok := ReadToken(t, s.AgentTokenFile(t))
	serverTok := ReadToken(t, s.DataDir+"/join-token")
	if agentTok.Secret == serverTok.Secret {
		t.Fatal("the agent token is the server token")
	}

	// The endpoint serves the server token; the agent token is refused.
	if _, err := sup.ClusterSecrets(t, serverTok); err != nil {
		t.Fatalf("cluster secrets with the server token: %v", err)
	}
	_, err := sup.ClusterSecrets(t, agentTok)
	refused(t, "cluster secrets with the agent token", err, "403")

	victim := NewKey(t)
	creds, err := sup.NodeCredentials(t, agentTok, "victim", victim, []string{"victim"}, "10.200.0.7")
	if err != nil {
		t.Fatalf("the agent token's own node credentials: %v", err)
	}
	if len(creds.GossipKey) != 32 {
		t.Errorf("node credentials carry a %d-byte gossip key, want 32", len(creds.GossipKey))
	}

	attacker := NewKey(t)
	_, err = sup.NodeCredentials(t, agentTok, "victim", attacker, []string{"victim"}, "10.200.0.66")
	refused(t, "another node's name", err, "registered with another key")
	_, err = sup.NodeCredentials(t, agentTok, "sec-server", attacker, []string{"sec-server"}, "10.200.0.66")
	refused(t, "the server's node name", err, "is a server's")
	for _, tc := range []struct {
		what string
		dns  []string
		ip   string
		want string
	}{
		{"the server's address", []string{"mallory"}, "127.0.0.1", "loopback"},
		{"the kubernetes service's name", []string{"mallory", "kubernetes.default.svc.cluster.local"}, "10.200.0.66", "may only name the node"},
		{"the kubernetes service's IP", []string{"mallory"}, "10.43.0.1", "service range"},
		{"the server's name", []string{"mallory", "sec-server"}, "10.200.0.66", "may only name the node"},
		{"another node's address", []string{"mallory"}, "10.200.0.7", "another node"},
	} {
		_, err := sup.NodeCredentials(t, agentTok, "mallory", attacker, tc.dns, tc.ip)
		refused(t, tc.what, err, tc.want)
	}

	t.Run("Rotate", func(t *testing.T) { testRotate(t, s, sup, agentTok, victim, creds) })
}

// testRotate: `keelson token rotate` replaces the agent token on the running
// cluster; the old one is refused, nodes keep the certificates they have and
// renew with the new token.
func testRotate(t *testing.T, s *harness.Server, sup Supervisor, old join.Token, victim *ecdsa.PrivateKey, had *join.NodeCredentials) {
	out, err := exec.Command(s.Bin, "token", "rotate", "--data-dir", s.DataDir).Output()
	if err != nil {
		t.Fatalf("keelson token rotate: %v", err)
	}
	rotated, err := join.ParseToken(strings.TrimSpace(string(out)))
	if err != nil || rotated.Secret == old.Secret || rotated.CAHash != old.CAHash {
		t.Fatalf("keelson token rotate printed %q (%v), want a new token of the same cluster", out, err)
	}
	if file := ReadToken(t, s.AgentTokenFile(t)); file != rotated {
		t.Errorf("agent-token file holds %v after rotate, want the printed token", file)
	}
	// A supervisor trusts the record it read for agenttoken.RecordTTL.
	time.Sleep(agenttoken.RecordTTL)
	_, err = sup.NodeCredentials(t, old, "latecomer", NewKey(t), []string{"latecomer"}, "10.200.0.9")
	if !errors.Is(err, join.ErrWrongCluster) {
		t.Errorf("the old agent token after rotate: %v, want refused as a wrong token", err)
	}
	block, _ := pem.Decode(had.ClientCert)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(had.CACert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("a node's certificate from before the rotation: %v", err)
	}
	if _, err := sup.NodeCredentials(t, rotated, "victim", victim, []string{"victim"}, "10.200.0.7"); err != nil {
		t.Errorf("renewal with the new token and the node's key: %v", err)
	}
}
