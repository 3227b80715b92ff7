package serfpool

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreateToken(t *testing.T) {
	dir := t.TempDir()
	tok, err := LoadOrCreateToken(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 64 {
		t.Errorf("generated token %q: want 64 hex characters", tok)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("token file mode = %o, want 600", perm)
	}
	again, err := LoadOrCreateToken(dir, "")
	if err != nil || again != tok {
		t.Errorf("second load = %q, %v; want the stored %q", again, err, tok)
	}
	same, err := LoadOrCreateToken(dir, tok)
	if err != nil || same != tok {
		t.Errorf("load with the same --token = %q, %v", same, err)
	}
	_, err = LoadOrCreateToken(dir, "a-different-token-0123456789")
	if err == nil || !strings.Contains(err.Error(), "--token differs") || !strings.Contains(err.Error(), dir) {
		t.Errorf("load with another --token = %v, want an error naming --token and the data dir", err)
	}

	given := t.TempDir()
	tok, err = LoadOrCreateToken(given, "operator-chosen-token-42")
	if err != nil || tok != "operator-chosen-token-42" {
		t.Fatalf("given token = %q, %v", tok, err)
	}
	if tok, err = LoadOrCreateToken(given, ""); err != nil || tok != "operator-chosen-token-42" {
		t.Errorf("restart without --token = %q, %v; want the stored given token", tok, err)
	}

	if _, err := LoadOrCreateToken(t.TempDir(), "short"); err == nil || !strings.Contains(err.Error(), "--token") {
		t.Errorf("short token = %v, want an error naming --token", err)
	}
	if _, err := LoadOrCreateToken(t.TempDir(), "passwordpassword"); err == nil || !strings.Contains(err.Error(), "openssl rand -hex 32") {
		t.Errorf("guessable token = %v, want an error saying how to generate one", err)
	}
	// A stored token made before the entropy rule keeps working.
	old := t.TempDir()
	if err := os.WriteFile(filepath.Join(old, TokenFile), []byte("passwordpassword\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := LoadOrCreateToken(old, "passwordpassword"); err != nil || tok != "passwordpassword" {
		t.Errorf("stored pre-rule token = %q, %v; want it kept", tok, err)
	}
}

func TestGossipKey(t *testing.T) {
	k1, err := GossipKey(testToken)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := GossipKey(testToken)
	k3, _ := GossipKey(testToken + "x")
	if len(k1) != 32 {
		t.Errorf("key length %d, want 32 (AES-256)", len(k1))
	}
	if !bytes.Equal(k1, k2) {
		t.Error("same token gave different keys")
	}
	if bytes.Equal(k1, k3) {
		t.Error("different tokens gave the same key")
	}
	if bytes.Contains(k1, []byte(testToken[:8])) {
		t.Error("key contains the token")
	}
}
