package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/join"
)

func TestJoinFetchesClusterSecrets(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.Ensure(dir, pki.Options{Hostname: "s1", NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := pki.CAHash(b.CA.CertFile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sv := &supervisor{pkiDir: dir, secret: "s3cret", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go sv.serve(ctx, l, b)
	addr := []string{l.Addr().String()}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()

	s, err := fetchClusterSecrets(fctx, addr, join.Token{CAHash: hash, Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pki.ExportCluster(dir)
	if string(s.CAKey) != string(want.CAKey) || string(s.SAKey) != string(want.SAKey) {
		t.Fatal("received secrets differ from the cluster's")
	}
	if _, err := fetchClusterSecrets(fctx, addr, join.Token{CAHash: hash, Secret: "wrong"}); err == nil || !strings.Contains(err.Error(), "wrong token") {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := fetchClusterSecrets(fctx, addr, join.Token{CAHash: strings.Repeat("00", 32), Secret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Fatalf("wrong CA hash: %v", err)
	}
	if _, err := fetchClusterSecrets(fctx, addr, join.Token{Secret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "full token") {
		t.Fatalf("bare secret: %v", err)
	}
}

func TestSupervisorIssuesNodeCredentials(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.Ensure(dir, pki.Options{Hostname: "s1", NodeName: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := pki.CAHash(b.CA.CertFile)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sv := &supervisor{pkiDir: dir, secret: "s3cret", log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	go sv.serve(ctx, l, b)
	tok := join.Token{CAHash: hash, Secret: "s3cret"}
	client, err := join.PinnedClient(tok)
	if err != nil {
		t.Fatal(err)
	}
	req := join.NodeCredentialsRequest{
		NodeName:   "worker-1",
		ClientCSR:  testCSR(t, x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:masters-please"}}),
		ServingCSR: testCSR(t, x509.CertificateRequest{DNSNames: []string{"worker-1"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.7")}}),
	}
	var got join.NodeCredentials
	if err := join.Call(ctx, client, l.Addr().String(), http.MethodPost, join.NodeCredentialsPath, tok, req, &got); err != nil {
		t.Fatal(err)
	}
	client1 := parsePEMCert(t, got.ClientCert)
	if client1.Subject.CommonName != "system:node:worker-1" || len(client1.Subject.Organization) != 1 || client1.Subject.Organization[0] != "system:nodes" {
		t.Errorf("client certificate subject %v, want CN system:node:worker-1 O system:nodes", client1.Subject)
	}
	serving := parsePEMCert(t, got.ServingCert)
	if len(serving.IPAddresses) != 1 || !serving.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) || serving.DNSNames[0] != "worker-1" {
		t.Errorf("serving certificate names %v %v", serving.DNSNames, serving.IPAddresses)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(got.CACert)
	if _, err := serving.Verify(x509.VerifyOptions{Roots: pool, DNSName: "worker-1"}); err != nil {
		t.Errorf("serving certificate does not verify against the returned CA: %v", err)
	}
	if _, err := client1.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify against the returned CA: %v", err)
	}

	wrong := join.Token{CAHash: hash, Secret: "wrong"}
	if err := join.Call(ctx, client, l.Addr().String(), http.MethodPost, join.NodeCredentialsPath, wrong, req, &got); !errors.Is(err, join.ErrWrongCluster) {
		t.Errorf("wrong secret: %v, want ErrWrongCluster", err)
	}
	req.NodeName = "Not_A_Name"
	if err := join.Call(ctx, client, l.Addr().String(), http.MethodPost, join.NodeCredentialsPath, tok, req, &got); err == nil || !strings.Contains(err.Error(), "node name") {
		t.Errorf("bad node name: %v", err)
	}
}

func testCSR(t *testing.T, tmpl x509.CertificateRequest) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func parsePEMCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("no PEM in %q", data)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
