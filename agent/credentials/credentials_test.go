package credentials

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/join"
)

// fakeSupervisor signs whatever it is asked, recording the requests and the
// token secrets they carried.
type fakeSupervisor struct {
	srv    *httptest.Server
	hash   string
	mu     sync.Mutex
	keys   []string // client public keys, PKIX DER as a string
	secret []string
	dns    [][]string
	ips    [][]net.IP
}

func newFakeSupervisor(t *testing.T) *fakeSupervisor {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	sign := func(pub any, tmpl *x509.Certificate) []byte {
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(now.UnixNano()), now.Add(-time.Minute), now.Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvDER := sign(&srvKey.PublicKey, &x509.Certificate{IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}})
	f := &fakeSupervisor{hash: join.CAHash(caDER)}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req join.NodeCredentialsRequest
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		parse := func(b []byte) *x509.CertificateRequest {
			block, _ := pem.Decode(b)
			c, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Error(err)
			}
			return c
		}
		client, serving := parse(req.ClientCSR), parse(req.ServingCSR)
		pub, _ := x509.MarshalPKIXPublicKey(client.PublicKey)
		f.mu.Lock()
		f.keys = append(f.keys, string(pub))
		f.secret = append(f.secret, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		f.dns, f.ips = append(f.dns, serving.DNSNames), append(f.ips, serving.IPAddresses)
		f.mu.Unlock()
		enc := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
		json.NewEncoder(w).Encode(join.NodeCredentials{
			CACert:      enc(caDER),
			ClientCert:  enc(sign(client.PublicKey, &x509.Certificate{Subject: pkix.Name{CommonName: "system:node:" + req.NodeName}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})),
			ServingCert: enc(sign(serving.PublicKey, &x509.Certificate{DNSNames: serving.DNSNames, IPAddresses: serving.IPAddresses, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})),
			GossipKey:   make([]byte, 32),
		})
	}))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER, caDER}, PrivateKey: srvKey}}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// TestRenewalKeepsTheClientKeyAndRereadsTheToken: the cluster binds a node
// name to its client key, so a renewal must send the same key; it must
// also use the token now in --token-file (rotated), and the serving request
// names only the node and its IP.
func TestRenewalKeepsTheClientKeyAndRereadsTheToken(t *testing.T) {
	f := newFakeSupervisor(t)
	tokFile := filepath.Join(t.TempDir(), "agent-token")
	write := func(secret string) {
		if err := os.WriteFile(tokFile, []byte(join.Token{CAHash: f.hash, Secret: secret}.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("first-agent-token-0123456789")
	opts := Options{Dir: t.TempDir(), NodeName: "w1", Token: join.Token{CAHash: f.hash, Secret: "first-agent-token-0123456789"}, TokenFile: tokFile,
		Supervisors: func() []string { return []string{strings.TrimPrefix(f.srv.URL, "https://")} },
		ServingIPs:  []net.IP{net.ParseIP("10.0.0.7")}, ServingDNSNames: []string{"w1"}, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Ensure(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if key, err := s.GossipKey(); err != nil || len(key) != 32 {
		t.Fatalf("gossip key after joining: %v %v", key, err)
	}
	write("rotated-agent-token-0123456789")
	if err := s.request(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.keys) != 2 || f.keys[0] != f.keys[1] {
		t.Errorf("the renewal sent another client key: the cluster would refuse the node's name")
	}
	if f.secret[1] != "rotated-agent-token-0123456789" {
		t.Errorf("the renewal used token %q, want the one now in the token file", f.secret[1])
	}
	if len(f.dns[0]) != 1 || f.dns[0][0] != "w1" || len(f.ips[0]) != 1 || !f.ips[0][0].Equal(net.ParseIP("10.0.0.7")) {
		t.Errorf("serving request names %v %v, want only w1 and 10.0.0.7", f.dns[0], f.ips[0])
	}
}
