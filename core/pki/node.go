package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// Identities of node agents, as the Node authorizer and the NodeRestriction
// admission plugin expect them.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// NodeCertificates are what a joining node agent receives, PEM encoded.
type NodeCertificates struct {
	CA      []byte
	Client  []byte // CN system:node:<name>, O system:nodes
	Serving []byte // the kubelet API's serving certificate
}

// NodeRequest is a node's parsed pair of certificate requests.
type NodeRequest struct {
	Name    string
	Client  *x509.CertificateRequest
	Serving *x509.CertificateRequest
}

// ParseNodeRequest parses and checks the signatures of a node's two
// certificate requests.
func ParseNodeRequest(nodeName string, clientCSR, servingCSR []byte) (*NodeRequest, error) {
	if nodeName == "" {
		return nil, errors.New("pki: node name is empty")
	}
	client, err := parseCSR(clientCSR, "client")
	if err != nil {
		return nil, err
	}
	serving, err := parseCSR(servingCSR, "serving")
	if err != nil {
		return nil, err
	}
	if len(serving.DNSNames)+len(serving.IPAddresses) == 0 {
		return nil, errors.New("pki: the serving certificate request names no DNS name or IP address")
	}
	return &NodeRequest{Name: nodeName, Client: client, Serving: serving}, nil
}

// KeyHash identifies the node's client key: the hex SHA-256 of its public
// key (PKIX DER). A node name is bound to the first key that registers it.
func (r *NodeRequest) KeyHash() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(r.Client.PublicKey)
	if err != nil {
		return "", fmt.Errorf("pki: the client certificate request's key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// Issue signs the node's two certificates with the cluster CA in dir. The
// client certificate's subject is fixed to the node's identity whatever the
// request says; the serving certificate carries the request's DNS names and
// IPs, which the caller has checked (ServingPolicy.Check).
func (r *NodeRequest) Issue(dir string, now time.Time) (*NodeCertificates, error) {
	b := newBundle(dir)
	caCert, caKey, err := readPair(b.CA, "restore the cluster CA from backup")
	if err != nil {
		return nil, err
	}
	issue := func(csr *x509.CertificateRequest, tmpl *x509.Certificate) ([]byte, error) {
		serial, err := serialNumber()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
		tmpl.NotBefore = now.Add(-clockSkew)
		tmpl.NotAfter = now.Add(LeafLifetime)
		if tmpl.NotAfter.After(caCert.NotAfter) {
			tmpl.NotAfter = caCert.NotAfter
		}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, csr.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("pki: sign node certificate: %w", err)
		}
		return encodeCert(der), nil
	}
	clientPEM, err := issue(r.Client, &x509.Certificate{
		Subject:     pkix.Name{CommonName: NodeUserPrefix + r.Name, Organization: []string{NodesGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	servingPEM, err := issue(r.Serving, &x509.Certificate{
		Subject:     pkix.Name{CommonName: r.Name, Organization: []string{NodesGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    r.Serving.DNSNames,
		IPAddresses: r.Serving.IPAddresses,
	})
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(b.CA.CertFile)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &NodeCertificates{CA: caPEM, Client: clientPEM, Serving: servingPEM}, nil
}

func parseCSR(data []byte, what string) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("pki: the %s certificate request is not a PEM CERTIFICATE REQUEST", what)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: the %s certificate request: %w", what, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: the %s certificate request is not signed by its key: %w", what, err)
	}
	return csr, nil
}
