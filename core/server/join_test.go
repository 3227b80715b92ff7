package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/pki"
)

func TestParseToken(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	cases := []struct {
		in      string
		want    JoinToken
		wantErr string
	}{
		{"K10" + hash + "::s3cret", JoinToken{CAHash: hash, Secret: "s3cret"}, ""},
		{"plain", JoinToken{Secret: "plain"}, ""},
		{"", JoinToken{}, "empty"},
		{"K10abc::x", JoinToken{}, "malformed"},
		{"K10" + hash + "::", JoinToken{}, "malformed"},
	}
	for _, tc := range cases {
		got, err := ParseToken(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || got.String() != tc.in {
			t.Errorf("%q: got %+v %v", tc.in, got, err)
		}
	}
}

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

	s, err := fetchClusterSecrets(fctx, addr, JoinToken{CAHash: hash, Secret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := pki.ExportCluster(dir)
	if string(s.CAKey) != string(want.CAKey) || string(s.SAKey) != string(want.SAKey) {
		t.Fatal("received secrets differ from the cluster's")
	}
	if _, err := fetchClusterSecrets(fctx, addr, JoinToken{CAHash: hash, Secret: "wrong"}); err == nil || !strings.Contains(err.Error(), "wrong token") {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := fetchClusterSecrets(fctx, addr, JoinToken{CAHash: strings.Repeat("00", 32), Secret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "CA hash") {
		t.Fatalf("wrong CA hash: %v", err)
	}
	if _, err := fetchClusterSecrets(fctx, addr, JoinToken{Secret: "s3cret"}); err == nil || !strings.Contains(err.Error(), "full token") {
		t.Fatalf("bare secret: %v", err)
	}
}
