// Package join is the wire side of a server's supervisor port, shared by the
// servers that serve it and the servers and agents that join through it: the
// join tokens, TLS pinned by a token's CA hash, and the node credentials an
// agent obtains with a token.
//
// A cluster has two tokens, as k3s does. Both read "K10<CA hash>::<secret>".
// The server token (DATA_DIR/join-token) is cluster root: with it a server
// obtains the cluster's CA and signing keys (ClusterSecretsPath), and the
// gossip encryption key is derived from its secret. The agent token
// (DATA_DIR/agent-token) only obtains node credentials (NodeCredentialsPath);
// it is an independent random secret, so holding it reveals nothing of the
// server token, and the gossip key reaches agents inside their credentials.
// A server token can do everything an agent token can.
package join

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	"net/http"
	"strings"
	"time"
)

// A join token is "K10<sha256 of the cluster CA>::<secret>", as k3s does: the
// hash lets a joiner pin the cluster it talks to before it trusts anything,
// the secret proves to the cluster that the joiner may join (and keys the
// gossip encryption).
const tokenPrefix = "K10"

// Token is a parsed server or agent token.
type Token struct {
	CAHash string // empty for a bare secret
	Secret string
}

// ParseToken accepts the full K10 form or a bare secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		if s == "" {
			return Token{}, errors.New("token (--token): empty")
		}
		return Token{Secret: s}, nil
	}
	hash, secret, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "::")
	if _, err := hex.DecodeString(hash); !ok || err != nil || len(hash) != 64 || secret == "" {
		return Token{}, errors.New("token (--token): malformed; expected K10<64 hex digits>::<secret> as printed by the first server")
	}
	return Token{CAHash: hash, Secret: secret}, nil
}

// String renders the full token.
func (t Token) String() string {
	if t.CAHash == "" {
		return t.Secret
	}
	return tokenPrefix + t.CAHash + "::" + t.Secret
}

// CAHash is the hex SHA-256 of a CA certificate's DER bytes, as tokens
// carry it.
func CAHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ErrWrongCluster marks a join refused for a reason retrying cannot fix: the
// token's secret or CA hash does not match the cluster.
var ErrWrongCluster = errors.New("wrong token or wrong cluster")

// ErrClockSkew marks a join refused because this host's clock and the
// server's differ too much for certificates to work: certificates are
// checked against each side's own clock.
var ErrClockSkew = errors.New("clock skew")

// MaxClockSkew is the largest difference between a joiner's clock and a
// server's that certificates tolerate: servers backdate a certificate's
// start by this much (core/pki), so a joiner further behind finds the
// certificates it is issued not yet valid.
const MaxClockSkew = 5 * time.Minute

// Refused reports whether err is a join refusal retrying cannot fix.
func Refused(err error) bool {
	return errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrClockSkew)
}

// Paths served on the supervisor port.
const (
	ClusterSecretsPath  = "/v1/cluster-secrets"
	NodeCredentialsPath = "/v1/node-credentials"
)

// NodeCredentialsRequest asks for a node's certificates. The private keys
// stay with the agent: it sends certificate requests.
type NodeCredentialsRequest struct {
	NodeName string `json:"nodeName"`
	// ClientCSR becomes the node's API identity, CN system:node:<NodeName>
	// in group system:nodes, whatever subject the request carries.
	ClientCSR []byte `json:"clientCSR"`
	// ServingCSR becomes the kubelet API's serving certificate for the
	// request's DNS names and IP addresses.
	ServingCSR []byte `json:"servingCSR"`
	// RegisterTaints are set on the Node if this request creates it (the
	// supervisor holds the name from the first request, before the agent
	// registers, and a node may not taint itself afterwards).
	RegisterTaints []corev1.Taint `json:"registerTaints,omitempty"`
}

// NodeCredentials are the issued certificates, PEM encoded, and where the
// cluster's servers are.
type NodeCredentials struct {
	CACert      []byte   `json:"caCert"`
	ClientCert  []byte   `json:"clientCert"`
	ServingCert []byte   `json:"servingCert"`
	Servers     []Server `json:"servers"`
	// GossipKey is the 32-byte encryption key of the cluster's gossip pool,
	// which a node joins as its heartbeat. Servers derive it from the
	// server token; agents only ever receive it here.
	GossipKey []byte `json:"gossipKey"`
}

// Server is how a node reaches one server.
type Server struct {
	// API is host:port of its Kubernetes API.
	API string `json:"api"`
	// Gossip is host:port of its serf member, which agents join.
	Gossip string `json:"gossip"`
}

// PinnedClient returns an HTTPS client that trusts only a server whose chain
// ends in the CA the token's hash names. Servers send their CA after their
// leaf certificate for this purpose.
func PinnedClient(tok Token) (*http.Client, error) {
	if tok.CAHash == "" {
		return nil, errors.New("token (--token): joining needs the full token (K10<ca hash>::<secret>) printed by the first server, so the cluster's CA can be verified")
	}
	pinned := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) < 2 {
			return errors.New("server sent no CA certificate")
		}
		if got := CAHash(raw[len(raw)-1]); got != tok.CAHash {
			return fmt.Errorf("%w: the server's cluster CA hash is %s but the token (--token) expects %s: the token is from a different cluster; copy it from a server of the cluster being joined (DATA_DIR/join-token for servers, DATA_DIR/agent-token for agents)",
				ErrWrongCluster, got, tok.CAHash)
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
		now := time.Now()
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now})
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return validityError(leaf, now)
		}
		return err
	}
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			// The chain is verified against the pinned CA above.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: pinned, MinVersion: tls.VersionTLS12}, //nolint:gosec
		},
	}, nil
}

// Call sends one request to the supervisor at addr (host:port) and decodes
// the JSON answer into out. A refused secret or a foreign CA is reported as
// ErrWrongCluster.
func Call(ctx context.Context, client *http.Client, addr, method, path string, tok Token, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		// The TLS stack flattens the verifier's error to text.
		for _, sentinel := range []error{ErrWrongCluster, ErrClockSkew} {
			if errors.Is(err, sentinel) || strings.Contains(err.Error(), sentinel.Error()+": ") {
				return fmt.Errorf("%s: %w: %v", addr, sentinel, err)
			}
		}
		return fmt.Errorf("%s: %w", addr, err)
	}
	if err := checkSkew(resp.Header.Get("Date"), time.Now()); err != nil {
		resp.Body.Close()
		return fmt.Errorf("%s: %w", addr, err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", addr, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%s: %w: the server refused the token's secret", addr, ErrWrongCluster)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", addr, resp.Status, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: bad answer: %w", addr, err)
	}
	return nil
}

// validityError explains a server certificate that is not valid at this
// host's now: before its start, this host's clock is behind the server's;
// past its end, either the certificate expired or this clock is ahead.
func validityError(leaf *x509.Certificate, now time.Time) error {
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("%w: the server's certificate is valid from %s, but this host's clock reads %s: this clock is at least %s behind the server's; set it right (NTP: chronyd, systemd-timesyncd) and start again",
			ErrClockSkew, leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leaf.NotBefore.Sub(now).Round(time.Second))
	}
	return fmt.Errorf("%w: the server's certificate expired at %s by this host's clock, which reads %s: either this clock is at least %s ahead (set it right: NTP) or the server's certificate expired (run `keelson certificate check` on the server)",
		ErrClockSkew, leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), now.Sub(leaf.NotAfter).Round(time.Second))
}

// checkSkew compares a server's HTTP Date header with this host's clock and
// refuses a difference beyond MaxClockSkew. A missing or malformed header
// is no evidence either way.
func checkSkew(date string, now time.Time) error {
	server, err := http.ParseTime(date)
	if err != nil {
		return nil
	}
	skew := now.Sub(server)
	dir := "ahead of"
	if skew < 0 {
		skew, dir = -skew, "behind"
	}
	if skew <= MaxClockSkew {
		return nil
	}
	return fmt.Errorf("%w: this host's clock is %s %s the server's (server: %s, here: %s), more than the %s certificates tolerate; set it right (NTP: chronyd, systemd-timesyncd) and start again",
		ErrClockSkew, skew.Round(time.Second), dir, server.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), MaxClockSkew)
}

// UnreachableHint says what to check when no supervisor at addrs answered
// with err: nothing listening, no route, or a name that does not resolve.
// flag names where the addresses came from (--join, --server). It returns
// "" for errors that are not about reaching the server.
func UnreachableHint(err error, flag string) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "nothing listens there: check that a keelson server runs at the " + flag + " address and serves its supervisor port (--supervisor-port) on it"
	case strings.Contains(s, "no such host"):
		return "the " + flag + " host name does not resolve: check its spelling and DNS, or give an IP address"
	case strings.Contains(s, "i/o timeout"), strings.Contains(s, "no route to host"), strings.Contains(s, "network is unreachable"), strings.Contains(s, "deadline exceeded"):
		return "no answer: check the " + flag + " address, the route to it, and firewalls between the hosts (the supervisor port, --supervisor-port)"
	}
	return ""
}
