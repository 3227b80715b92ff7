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
		if CAHash(raw[len(raw)-1]) != tok.CAHash {
			return fmt.Errorf("server's CA does not match the token's CA hash: %w", ErrWrongCluster)
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
		if errors.Is(err, ErrWrongCluster) || strings.Contains(err.Error(), ErrWrongCluster.Error()) {
			return fmt.Errorf("%s: %w: %v", addr, ErrWrongCluster, err)
		}
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
