package config

import (
	"strings"
	"testing"
)

func TestSecretsEncryptionValidation(t *testing.T) {
	tests := []struct {
		name string
		set  func(*APIServer)
		want string // substring of the one error; "" for valid
	}{
		{"default encrypts", func(*APIServer) {}, ""},
		{"own config", func(a *APIServer) { a.EncryptionConfig = "/etc/keelson/enc.yaml" }, ""},
		{"disabled", func(a *APIServer) { a.DisableSecretsEncryption = true }, ""},
		{"relative path", func(a *APIServer) { a.EncryptionConfig = "enc.yaml" }, `apiServer.encryptionConfig (--encryption-config): "enc.yaml" must be an absolute path`},
		{"both", func(a *APIServer) {
			a.EncryptionConfig = "/etc/enc.yaml"
			a.DisableSecretsEncryption = true
		}, "apiServer.encryptionConfig (--encryption-config) and apiServer.disableSecretsEncryption (--disable-secrets-encryption) contradict"},
		{"extra arg and field", func(a *APIServer) {
			a.DisableSecretsEncryption = true
			a.ExtraArgs = map[string]string{"encryption-provider-config": "/x"}
		}, "use apiServer.encryptionConfig (--encryption-config) instead"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := DefaultServer().APIServer
			tc.set(&a)
			errs := a.validate()
			if tc.want == "" {
				if len(errs) != 0 {
					t.Fatalf("unexpected errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("errors %v, want one containing %q", errs, tc.want)
			}
		})
	}
}

func TestSecretsEncryptionFlags(t *testing.T) {
	fs := parse(t, "--encryption-config", "/etc/keelson/enc.yaml")
	cfg, err := LoadServer("", fs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIServer.EncryptionConfig != "/etc/keelson/enc.yaml" || cfg.APIServer.DisableSecretsEncryption {
		t.Fatalf("flags gave %+v", cfg.APIServer)
	}
	if _, err := LoadServer("", parse(t, "--disable-secrets-encryption", "--encryption-config", "/e.yaml")); err == nil ||
		!strings.Contains(err.Error(), "contradict") {
		t.Fatalf("contradicting flags: %v", err)
	}
}
