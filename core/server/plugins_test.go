package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestTokenPluginGetsTheServiceAccountKey(t *testing.T) {
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
			out, err := withServiceAccountKey(json.RawMessage(tc.section), keyFile)
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
	if _, err := withServiceAccountKey(json.RawMessage(`[1]`), keyFile); err == nil {
		t.Error("a section that is not an object accepted")
	}
}
