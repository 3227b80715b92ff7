package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Plugin identities. Every plugin process authenticates with a client
// certificate issued for one plugin and one raft term: the user name says
// which plugin (RBAC binds its least-privilege role to it), the term group
// says which leader started it (the API server's fencing admission refuses
// writes from a term older than the cluster's).
const (
	// PluginUserPrefix starts a plugin's user name: system:keelson:plugin:NAME.
	PluginUserPrefix = "system:keelson:plugin:"
	// PluginsGroup is carried by every plugin identity.
	PluginsGroup = "system:keelson:plugins"
	// TermGroupPrefix starts the group carrying the plugin's raft term:
	// system:keelson:term:N.
	TermGroupPrefix = "system:keelson:term:"
)

// PluginUser is the user name of plugin name.
func PluginUser(name string) string { return PluginUserPrefix + name }

// TermGroup is the group that carries raft term term.
func TermGroup(term uint64) string { return TermGroupPrefix + strconv.FormatUint(term, 10) }

// ParseTermGroup returns the term of a TermGroup and whether group is one.
func ParseTermGroup(group string) (uint64, bool) {
	rest, ok := strings.CutPrefix(group, TermGroupPrefix)
	if !ok {
		return 0, false
	}
	term, err := strconv.ParseUint(rest, 10, 64)
	return term, err == nil
}

// ClientCert is an in-memory client certificate and key, PEM-encoded.
type ClientCert struct {
	CertPEM, KeyPEM []byte
	NotAfter        time.Time
}

// IssueClient signs a client certificate for user cn in groups orgs with the
// cluster CA, valid for lifetime (capped by the CA's own expiry). Nothing is
// written to disk: the caller hands it to the process that uses it.
func (b *Bundle) IssueClient(cn string, orgs []string, lifetime time.Duration, now time.Time) (ClientCert, error) {
	caCert, caKey, err := readPair(b.CA, "restore the CA pair from backup")
	if err != nil {
		return ClientCert{}, err
	}
	key, err := newKey()
	if err != nil {
		return ClientCert{}, err
	}
	serial, err := serialNumber()
	if err != nil {
		return ClientCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return ClientCert{}, fmt.Errorf("pki: sign client certificate for %s: %w", cn, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return ClientCert{}, err
	}
	return ClientCert{CertPEM: encodeCert(der), KeyPEM: keyPEM, NotAfter: tmpl.NotAfter}, nil
}

// IssuePlugin issues plugin name's identity for raft term.
func (b *Bundle) IssuePlugin(name string, term uint64, lifetime time.Duration, now time.Time) (ClientCert, error) {
	return b.IssueClient(PluginUser(name), []string{PluginsGroup, TermGroup(term)}, lifetime, now)
}
