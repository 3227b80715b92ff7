package nodeproof

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
)

func TestSignVerify(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hash, err := KeyHash(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := Sign(key, "worker-1", "10.0.0.5:7946")
	if err != nil {
		t.Fatal(err)
	}
	if len(tag) > 160 {
		t.Errorf("tag is %d bytes; serf caps all tags at 512", len(tag))
	}
	if err := Verify(tag, "worker-1", "10.0.0.5:7946", hash); err != nil {
		t.Errorf("a valid proof refused: %v", err)
	}
	forged, _ := Sign(other, "worker-1", "10.0.0.9:7946")
	for _, tc := range []struct {
		what, tag, name, addr, want string
	}{
		{"no proof", "", "worker-1", "10.0.0.5:7946", "no proof"},
		{"replayed at another address", tag, "worker-1", "10.0.0.9:7946", "does not sign node worker-1 at 10.0.0.9:7946"},
		{"replayed for another name", tag, "worker-2", "10.0.0.5:7946", "does not sign"},
		{"another key", forged, "worker-1", "10.0.0.9:7946", "is not the key node worker-1 is bound to"},
		{"garbage", "abc", "worker-1", "10.0.0.5:7946", "malformed"},
	} {
		if err := Verify(tc.tag, tc.name, tc.addr, hash); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.what, err, tc.want)
		}
	}
}
