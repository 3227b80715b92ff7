package join

import (
	"strings"
	"testing"
)

func TestParseToken(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	cases := []struct {
		in      string
		want    Token
		wantErr string
	}{
		{"K10" + hash + "::s3cret", Token{CAHash: hash, Secret: "s3cret"}, ""},
		{"plain", Token{Secret: "plain"}, ""},
		{"", Token{}, "empty"},
		{"K10abc::x", Token{}, "malformed"},
		{"K10" + hash + "::", Token{}, "malformed"},
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
