package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelson/keelson/core/pki"
)

func TestBuiltinsGetTheirKeyFiles(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "sa.key")
	if err := os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, section, wantKey string
		wantWorkers            bool
	}{
		{"empty section", "", "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", false},
		{"other settings kept", `{"workers":2}`, "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n", true},
		{"operator's key wins", `{"serviceAccountKeyPEM":"mine"}`, "mine", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := withKeyFiles("token", json.RawMessage(tc.section), map[string]string{"serviceAccountKeyPEM": keyFile})
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Key     string `json:"serviceAccountKeyPEM"`
				Workers *int   `json:"workers"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("section %s: %v", out, err)
			}
			if got.Key != tc.wantKey || (got.Workers != nil) != tc.wantWorkers {
				t.Errorf("section %s", out)
			}
		})
	}
	if _, err := withKeyFiles("token", json.RawMessage(`[1]`), map[string]string{"serviceAccountKeyPEM": keyFile}); err == nil {
		t.Error("a section that is not an object accepted")
	}
	if _, err := withKeyFiles("token", nil, map[string]string{"serviceAccountKeyPEM": keyFile + ".gone"}); err == nil ||
		!strings.Contains(err.Error(), "serviceAccountKeyPEM") {
		t.Errorf("a missing key file: %v", err)
	}
}

// The CSR signing plugin gets the signer CA, which mints API clients only,
// and never the cluster CA's key.
func TestCSRSigningGetsTheSignerCAOnly(t *testing.T) {
	b, err := pki.Ensure(t.TempDir(), pki.Options{Hostname: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	files := keyFiles(b)["csrsigning"]
	if files["caCertPEM"] != b.CSRSigner.CertFile || files["caKeyPEM"] != b.CSRSigner.KeyFile {
		t.Errorf("csrsigning gets %v, want the signer CA %v", files, b.CSRSigner)
	}
	for plugin, fs := range keyFiles(b) {
		for key, path := range fs {
			if path == b.CA.KeyFile || path == b.FrontProxyCA.KeyFile {
				t.Errorf("plugin %s gets a cluster CA key as %s", plugin, key)
			}
		}
	}
}
