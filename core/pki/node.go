package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
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

// IssueNodeCertificates signs a node's two certificate requests with the
// cluster CA in dir. The client certificate's subject is fixed to the node's
// identity whatever the request says; the serving certificate carries the
// DNS names and IPs of its request (the caller has authenticated the node
// with the cluster token, which admits it to the cluster).
func IssueNodeCertificates(dir, nodeName string, clientCSR, servingCSR []byte, now time.Time) (*NodeCertificates, error) {
	if nodeName == "" {
		return nil, errors.New("pki: node name is empty")
	}
	b := newBundle(dir)
	caCert, caKey, err := readPair(b.CA, "restore the cluster CA from backup")
	if err != nil {
		return nil, err
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
	clientPEM, err := issue(client, &x509.Certificate{
		Subject:     pkix.Name{CommonName: NodeUserPrefix + nodeName, Organization: []string{NodesGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	servingPEM, err := issue(serving, &x509.Certificate{
		Subject:     pkix.Name{CommonName: nodeName, Organization: []string{NodesGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    serving.DNSNames,
		IPAddresses: serving.IPAddresses,
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
