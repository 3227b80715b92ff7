// Package csrrules holds what the built-in signers of certificates.k8s.io
// require of a CertificateSigningRequest (upstream's rules for
// kube-apiserver-client, kube-apiserver-client-kubelet, kubelet-serving and
// legacy-unknown) and how to read its state; the csrapproving and
// csrsigning plugins share it.
package csrrules

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// The signers Keelson signs for.
const (
	APIServerClient        = certificatesv1.KubeAPIServerClientSignerName
	APIServerClientKubelet = certificatesv1.KubeAPIServerClientKubeletSignerName
	KubeletServing         = certificatesv1.KubeletServingSignerName
	// LegacyUnknown cannot be requested through certificates.k8s.io/v1;
	// requests stored before v1beta1 was removed may still carry it.
	LegacyUnknown = "kubernetes.io/legacy-unknown"
)

// Signers are the signer names csrsigning issues certificates for.
var Signers = []string{APIServerClient, APIServerClientKubelet, KubeletServing, LegacyUnknown}

// NodeUserPrefix and NodesGroup are the identity of a node's client.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// ParseRequest decodes the PEM CertificateRequest of a CSR and checks its
// signature, so a request whose key does not sign it is never issued.
func ParseRequest(pemBytes []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("spec.request holds no PEM CERTIFICATE REQUEST block")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("spec.request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("spec.request is not signed by its own key: %w", err)
	}
	return req, nil
}

// Validate checks req and usages against what signer issues.
func Validate(signer string, req *x509.CertificateRequest, usages []certificatesv1.KeyUsage) error {
	switch signer {
	case APIServerClient:
		return checkUsages(usages, certificatesv1.UsageClientAuth)
	case APIServerClientKubelet:
		return KubeletClient(req, usages)
	case KubeletServing:
		return kubeletServing(req, usages)
	case LegacyUnknown:
		return nil
	}
	return fmt.Errorf("signer %q is not one of %s", signer, strings.Join(Signers, ", "))
}

// KubeletClient checks a kube-apiserver-client-kubelet request: a node's
// client identity (CN system:node:NAME, O system:nodes only), no subject
// alternative names, usages client auth (digital signature and key
// encipherment optional).
func KubeletClient(req *x509.CertificateRequest, usages []certificatesv1.KeyUsage) error {
	if err := nodeSubject(req); err != nil {
		return err
	}
	if len(req.DNSNames) > 0 || len(req.EmailAddresses) > 0 || len(req.IPAddresses) > 0 || len(req.URIs) > 0 {
		return errors.New("a kubelet client certificate carries no subject alternative names")
	}
	return checkUsages(usages, certificatesv1.UsageClientAuth)
}

// kubeletServing checks a kubelet-serving request: a node's identity, at
// least one DNS name or IP address, no email or URI names, usages server
// auth (digital signature and key encipherment optional).
func kubeletServing(req *x509.CertificateRequest, usages []certificatesv1.KeyUsage) error {
	if err := nodeSubject(req); err != nil {
		return err
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return errors.New("a kubelet serving certificate needs at least one DNS name or IP address")
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return errors.New("a kubelet serving certificate carries no email or URI subject alternative names")
	}
	return checkUsages(usages, certificatesv1.UsageServerAuth)
}

func nodeSubject(req *x509.CertificateRequest) error {
	if !slices.Equal(req.Subject.Organization, []string{NodesGroup}) {
		return fmt.Errorf("subject organization must be exactly [%s], not %v", NodesGroup, req.Subject.Organization)
	}
	if !strings.HasPrefix(req.Subject.CommonName, NodeUserPrefix) || len(req.Subject.CommonName) == len(NodeUserPrefix) {
		return fmt.Errorf("subject common name must be %sNODE-NAME, not %q", NodeUserPrefix, req.Subject.CommonName)
	}
	return nil
}

// checkUsages requires the usage required and allows only it, digital
// signature and key encipherment.
func checkUsages(usages []certificatesv1.KeyUsage, required certificatesv1.KeyUsage) error {
	found := false
	for _, u := range usages {
		switch u {
		case required:
			found = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return fmt.Errorf("usage %q is not allowed; allowed: %q, %q, %q", u, required,
				certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment)
		}
	}
	if !found {
		return fmt.Errorf("spec.usages must include %q", required)
	}
	return nil
}

// State is where a CSR stands.
type State int

const (
	Pending  State = iota // no decision yet
	Approved              // approved, not yet issued or failed
	Denied
	Failed
	Issued
)

// StateOf reads csr's conditions and certificate. Denied and Failed win
// over Approved, as upstream.
func StateOf(csr *certificatesv1.CertificateSigningRequest) State {
	approved := false
	for _, c := range csr.Status.Conditions {
		if c.Status != "" && c.Status != "True" {
			continue
		}
		switch c.Type {
		case certificatesv1.CertificateDenied:
			return Denied
		case certificatesv1.CertificateFailed:
			return Failed
		case certificatesv1.CertificateApproved:
			approved = true
		}
	}
	switch {
	case len(csr.Status.Certificate) > 0:
		return Issued
	case approved:
		return Approved
	}
	return Pending
}
