package join

import (
	"strings"
	"testing"
)

func TestCheckSecret(t *testing.T) {
	gen, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		secret, want string // want: "" accepted, else a substring of the error
	}{
		{gen, ""},
		{"9c4f1e7a2b6d3058a1e4f7c2b9d60315", ""},
		{"correct-horse-battery-staple-42", ""},
		{"short", "at least 16"},
		{"aaaaaaaaaaaaaaaaaaaaaaaa", "too guessable"},
		{"passwordpassword", "too guessable"},
		{"0000000011111111", "too guessable"},
		{"has a space in it, 0123456789", "printable ASCII"},
	} {
		err := CheckSecret(tc.secret, "token (--token)")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want accepted", tc.secret, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v, want an error containing %q", tc.secret, err, tc.want)
		case err != nil && (!strings.Contains(err.Error(), "token (--token)") || !strings.Contains(err.Error(), "openssl rand -hex 32")):
			t.Errorf("%q: %v: want the field and how to generate a token named", tc.secret, err)
		}
	}
}

func TestSecretHashIsNotTheSecret(t *testing.T) {
	h := SecretHash("agent-secret-0123456789")
	if len(h) != 64 || strings.Contains(h, "agent") || h == SecretHash("agent-secret-0123456780") {
		t.Errorf("SecretHash = %q", h)
	}
}
