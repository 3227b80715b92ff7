package main

import (
	"bytes"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/pki"
)

func TestCertificateCheck(t *testing.T) {
	tests := []struct {
		name      string
		issued    time.Time // when the PKI was created
		wantErr   bool
		wantLines []string
	}{
		{"fresh", time.Now(), false, []string{"cluster CA", "never (a CA)", "server peer", "automatic, from", "ok"}},
		{"CA expires in 20 days", time.Now().Add(-pki.CALifetime + 20*24*time.Hour), true,
			[]string{"WARNING: expires in", "rotate the CA", "(in 19 days)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := pki.Ensure(filepath.Join(dir, "pki"), pki.Options{
				Hostname: "s1", NodeName: "s1",
				Now:    func() time.Time { return tc.issued },
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			cmd := newCertificateCommand()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs([]string{"check", "--data-dir", dir})
			err = cmd.Execute()
			if (err != nil) != tc.wantErr {
				t.Fatalf("certificate check error = %v, want error %v\n%s", err, tc.wantErr, out.String())
			}
			for _, w := range tc.wantLines {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
