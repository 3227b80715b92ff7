package join

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testSupervisor serves /v1/cluster-secrets over TLS with a leaf valid from
// notBefore, sending its CA in the chain as servers do, and answering with
// the given Date header ("" for Go's own). It returns the server and the
// CA hash a token for it carries.
func testSupervisor(t *testing.T, notBefore time.Time, date string) (*httptest.Server, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if date != "" {
			w.Header().Set("Date", date)
		}
		fmt.Fprint(w, `{}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, caDER}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, CAHash(caDER)
}

func callSupervisor(t *testing.T, srv *httptest.Server, tok Token) error {
	t.Helper()
	client, err := PinnedClient(tok)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	return Call(context.Background(), client, strings.TrimPrefix(srv.URL, "https://"), http.MethodGet, ClusterSecretsPath, tok, nil, &out)
}

func TestJoinRefusalsExplainThemselves(t *testing.T) {
	now := time.Now()
	healthy, hash := testSupervisor(t, now.Add(-time.Hour), "")
	if err := callSupervisor(t, healthy, Token{CAHash: hash, Secret: "s"}); err != nil {
		t.Fatalf("a matching token and clock: %v", err)
	}

	other := strings.Repeat("ab", 32)
	err := callSupervisor(t, healthy, Token{CAHash: other, Secret: "s"})
	if !errors.Is(err, ErrWrongCluster) || !Refused(err) {
		t.Errorf("a token of another cluster: %v; want ErrWrongCluster", err)
	}
	for _, want := range []string{"cluster CA hash is " + hash, "expects " + other, "--token", "different cluster"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("wrong-cluster error %v lacks %q", err, want)
		}
	}

	// The server's certificate starts an hour after this host's now: this
	// clock is behind.
	future, fhash := testSupervisor(t, now.Add(time.Hour), "")
	err = callSupervisor(t, future, Token{CAHash: fhash, Secret: "s"})
	if !errors.Is(err, ErrClockSkew) || !strings.Contains(err.Error(), "behind the server's") {
		t.Errorf("a certificate from the future: %v; want a clock skew error saying this clock is behind", err)
	}

	// The certificate is fine but the server's clock reads two hours later.
	serverNow := now.Add(2 * time.Hour).UTC()
	ahead, ahash := testSupervisor(t, now.Add(-time.Hour), serverNow.Format(http.TimeFormat))
	err = callSupervisor(t, ahead, Token{CAHash: ahash, Secret: "s"})
	if !errors.Is(err, ErrClockSkew) || !strings.Contains(err.Error(), "server: "+serverNow.Format("2006-01-02T15:04:05Z")) || !strings.Contains(err.Error(), "behind the server's") {
		t.Errorf("a server two hours ahead: %v; want a clock skew error with the skew", err)
	}
}

func TestCheckSkewTolerance(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		server time.Time
		want   string
	}{
		{now.Add(MaxClockSkew - time.Second), ""},
		{now.Add(-MaxClockSkew + time.Second), ""},
		{now.Add(10 * time.Minute), "10m0s behind the server's"},
		{now.Add(-10 * time.Minute), "10m0s ahead of the server's"},
	}
	for _, c := range cases {
		err := checkSkew(c.server.Format(http.TimeFormat), now)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("server at %s, here %s: %v; want %q", c.server, now, err, c.want)
		}
	}
	if err := checkSkew("", now); err != nil {
		t.Errorf("no Date header: %v", err)
	}
}

func TestUnreachableHint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	_, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if h := UnreachableHint(err, "--join"); !strings.Contains(h, "nothing listens there") || !strings.Contains(h, "--join") {
		t.Errorf("refused connection: hint %q", h)
	}
	if h := UnreachableHint(errors.New("dial tcp: lookup nosuch.invalid: no such host"), "--server"); !strings.Contains(h, "--server host name does not resolve") {
		t.Errorf("unknown host: hint %q", h)
	}
	if h := UnreachableHint(errors.New("401 wrong token"), "--join"); h != "" {
		t.Errorf("a refusal is not unreachability: hint %q", h)
	}
}
