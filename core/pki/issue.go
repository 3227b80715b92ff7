package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// authority is a loaded CA that can sign leaves.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	file string
	// created says the CA was made in this call, i.e. the cluster is new.
	created bool
}

// leafTemplate is what a leaf certificate must say.
type leafTemplate struct {
	cn     string
	orgs   []string
	server bool // serving certificate (ServerAuth + SANs) instead of a client one
	peer   bool // with server: also ClientAuth, for mutual TLS between servers
	dns    []string
	ips    []net.IP
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate P-256 key: %w", err)
	}
	return key, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n, nil
}

// readPair reads a certificate and its key and checks they belong together;
// fix tells the user what to do when they do not.
func readPair(pair Pair, fix string) (*x509.Certificate, crypto.Signer, error) {
	cert, err := readCert(pair.CertFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := readKey(pair.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("pki: key %s does not match certificate %s: %s: %w", pair.KeyFile, pair.CertFile, fix, ErrCorrupt)
	}
	return cert, key, nil
}

// ensureCA loads the CA in pair, or, when create is set, creates it when
// neither file exists.
func ensureCA(pair Pair, cn string, create bool, opts Options) (*authority, error) {
	present, err := presence(pair.CertFile, pair.KeyFile)
	if err != nil {
		return nil, err
	}
	switch len(present) {
	case 0:
		if !create {
			return nil, fmt.Errorf("pki: CA %s and %s are gone: restore them from backup or from another server of the cluster: %w", pair.CertFile, pair.KeyFile, ErrCorrupt)
		}
		return createCA(pair, cn, opts)
	case 1:
		have, missing := present[0], other(pair, present[0])
		return nil, fmt.Errorf("pki: %s exists but %s is missing: restore %s from backup (a new CA would invalidate every certificate and kubeconfig it issued); only on a brand-new cluster remove %s: %w",
			have, missing, missing, have, ErrCorrupt)
	}
	cert, key, err := readPair(pair, "restore the matching pair from backup")
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate: %w", pair.CertFile, ErrCorrupt)
	}
	now := opts.Now()
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("pki: CA %s expired on %s; the CA is never regenerated automatically, rotate it by hand: %w",
			pair.CertFile, cert.NotAfter.Format(time.RFC3339), ErrCorrupt)
	}
	if err := tightenKeyMode(pair.KeyFile, opts.Logger); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, file: pair.CertFile}, nil
}

func createCA(pair Pair, cn string, opts Options) (*authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"keelson"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(opts.CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := signAndWrite(pair, tmpl, tmpl, key, key)
	if err != nil {
		return nil, err
	}
	opts.Logger.Info("created certificate authority", "file", pair.CertFile, "cn", cn, "notAfter", cert.NotAfter)
	return &authority{cert: cert, key: key, file: pair.CertFile, created: true}, nil
}

// writePair writes the key before the certificate so that a crash in between
// leaves a pair that fails loudly (key mismatch) rather than one that half works.
func writePair(pair Pair, der []byte, key crypto.Signer) error {
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(pair.KeyFile, keyPEM, keyMode); err != nil {
		return err
	}
	return writeFileAtomic(pair.CertFile, encodeCert(der), certMode)
}

func other(pair Pair, path string) string {
	if path == pair.CertFile {
		return pair.KeyFile
	}
	return pair.CertFile
}

// ensureLeaf loads the leaf in pair, issuing it when absent and reissuing it (same
// key, same CA) when it is old or, for the serving certificate, lacks a name.
// changed says whether it wrote a new certificate.
func ensureLeaf(pair Pair, want leafTemplate, ca *authority, opts Options) (cert *x509.Certificate, changed bool, err error) {
	present, err := presence(pair.CertFile, pair.KeyFile)
	if err != nil {
		return nil, false, err
	}
	switch len(present) {
	case 0:
		key, err := newKey()
		if err != nil {
			return nil, false, err
		}
		cert, err := issueLeaf(pair, want, key, ca, opts)
		if err != nil {
			return nil, false, err
		}
		opts.Logger.Info("issued certificate", "file", pair.CertFile, "cn", want.cn, "notAfter", cert.NotAfter)
		return cert, true, nil
	case 1:
		return nil, false, halfPresentError(present[0], other(pair, present[0]), "certificate and key")
	}
	cert, key, err := readPair(pair, "remove both to have them reissued")
	if err != nil {
		return nil, false, err
	}
	if err := cert.CheckSignatureFrom(ca.cert); err != nil {
		return nil, false, fmt.Errorf("pki: %s was not issued by the CA in %s (%w): remove %s and %s to have them reissued (%w)",
			pair.CertFile, ca.file, err, pair.CertFile, pair.KeyFile, ErrCorrupt)
	}
	if err := tightenKeyMode(pair.KeyFile, opts.Logger); err != nil {
		return nil, false, err
	}
	var reasons []string
	if needsRenewal(cert, opts.Now()) {
		reasons = append(reasons, "past two thirds of its lifetime")
	}
	if want.server {
		missingDNS, missingIPs := missingNames(cert, want.dns, want.ips)
		if len(missingDNS)+len(missingIPs) > 0 {
			reasons = append(reasons, "lacks names "+strings.Join(append(missingDNS, ipStrings(missingIPs)...), ","))
			// Keep the names already certified: an address that is briefly absent
			// at one start must not make the certificate flip back and forth.
			want.dns = union(want.dns, cert.DNSNames)
			want.ips = unionIPs(want.ips, cert.IPAddresses)
		}
	}
	if len(reasons) == 0 {
		return cert, false, nil
	}
	newCert, err := issueLeaf(pair, want, key, ca, opts)
	if err != nil {
		return nil, false, err
	}
	opts.Logger.Info("reissued certificate", "file", pair.CertFile, "cn", want.cn, "reason", strings.Join(reasons, "; "),
		"oldNotAfter", cert.NotAfter, "notAfter", newCert.NotAfter)
	return newCert, true, nil
}

func issueLeaf(pair Pair, want leafTemplate, key crypto.Signer, ca *authority, opts Options) (*x509.Certificate, error) {
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: want.cn, Organization: want.orgs},
		NotBefore:    now.Add(-backdate(opts.LeafLifetime)),
		NotAfter:     now.Add(opts.LeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if want.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		if want.peer {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
		tmpl.DNSNames = want.dns
		tmpl.IPAddresses = want.ips
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	return signAndWrite(pair, tmpl, ca.cert, key, ca.key)
}

// signAndWrite signs tmpl (for key's public half) by parent/signer, writes
// the pair and returns the parsed certificate.
func signAndWrite(pair Pair, tmpl, parent *x509.Certificate, key, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", pair.CertFile, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse new %s: %w", pair.CertFile, err)
	}
	if err := writePair(pair, der, key); err != nil {
		return nil, err
	}
	return cert, nil
}

// ensureServiceAccountKey loads or creates the token signing key pair.
func ensureServiceAccountKey(keyFile, pubFile string, opts Options) error {
	present, err := presence(keyFile, pubFile)
	if err != nil {
		return err
	}
	switch len(present) {
	case 0:
		key, err := newKey()
		if err != nil {
			return err
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return err
		}
		pubPEM, err := encodePublicKey(key.Public())
		if err != nil {
			return err
		}
		if err := writeFileAtomic(keyFile, keyPEM, keyMode); err != nil {
			return err
		}
		if err := writeFileAtomic(pubFile, pubPEM, certMode); err != nil {
			return err
		}
		opts.Logger.Info("created service-account signing key", "file", keyFile)
		return nil
	case 1:
		have := present[0]
		missing := keyFile
		if have == keyFile {
			missing = pubFile
		}
		return fmt.Errorf("pki: %s exists but %s is missing: restore %s from backup (a new signing key invalidates every issued service-account token): %w",
			have, missing, missing, ErrCorrupt)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return err
	}
	pub, err := readPublicKey(pubFile)
	if err != nil {
		return err
	}
	if !samePublicKey(pub, key.Public()) {
		return fmt.Errorf("pki: service-account public key %s does not match %s: restore the matching pair from backup: %w", pubFile, keyFile, ErrCorrupt)
	}
	return tightenKeyMode(keyFile, opts.Logger)
}

// servingNames lists every name and address the API server must be valid for.
func servingNames(opts Options) ([]string, []net.IP, error) {
	dns := []string{
		"kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + opts.ClusterDomain, "localhost", opts.Hostname,
	}
	dns = union(dns, opts.DNSNames)
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	for _, cidr := range strings.Split(opts.ServiceCIDR, ",") {
		cidr = strings.TrimSpace(cidr)
		if cidr == "" {
			continue
		}
		ip, err := firstIP(cidr)
		if err != nil {
			return nil, nil, err
		}
		ips = unionIPs(ips, []net.IP{ip})
	}
	for _, ip := range opts.IPs {
		if ip != nil && !ip.IsUnspecified() {
			ips = unionIPs(ips, []net.IP{ip})
		}
	}
	return dns, ips, nil
}

// firstIP returns the first usable address of cidr, which kube-apiserver gives to
// the kubernetes service.
func firstIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("pki: service CIDR %q: %w", cidr, err)
	}
	ip := slices.Clone(n.IP)
	for i := len(ip) - 1; i >= 0; i-- {
		ip[i]++
		if ip[i] != 0 {
			break
		}
	}
	if !n.Contains(ip) {
		return nil, fmt.Errorf("pki: service CIDR %q has no usable address", cidr)
	}
	return ip, nil
}

func missingNames(cert *x509.Certificate, dns []string, ips []net.IP) ([]string, []net.IP) {
	var md []string
	for _, d := range dns {
		if !slices.ContainsFunc(cert.DNSNames, func(c string) bool { return strings.EqualFold(c, d) }) {
			md = append(md, d)
		}
	}
	var mi []net.IP
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			mi = append(mi, ip)
		}
	}
	return md, mi
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if s != "" && !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, s) }) {
			out = append(out, s)
		}
	}
	return out
}

func unionIPs(a, b []net.IP) []net.IP {
	out := slices.Clone(a)
	for _, ip := range b {
		if !slices.ContainsFunc(out, ip.Equal) {
			out = append(out, ip)
		}
	}
	return out
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
