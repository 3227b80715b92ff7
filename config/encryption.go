package config

import (
	"errors"
	"fmt"
	"path/filepath"
)

// validateEncryption checks the secrets-at-rest settings; the file's
// content is checked when the server starts (it may be written later).
func (a *APIServer) validateEncryption() []error {
	var errs []error
	if a.EncryptionConfig != "" && !filepath.IsAbs(a.EncryptionConfig) {
		errs = append(errs, fmt.Errorf("apiServer.encryptionConfig (--encryption-config): %q must be an absolute path", a.EncryptionConfig))
	}
	if a.EncryptionConfig != "" && a.DisableSecretsEncryption {
		errs = append(errs, errors.New("apiServer.encryptionConfig (--encryption-config) and apiServer.disableSecretsEncryption (--disable-secrets-encryption) contradict each other: set one of them"))
	}
	if _, ok := a.ExtraArgs["encryption-provider-config"]; ok && (a.EncryptionConfig != "" || a.DisableSecretsEncryption) {
		errs = append(errs, errors.New("apiServer.extraArgs (--kube-apiserver-arg) sets encryption-provider-config: use apiServer.encryptionConfig (--encryption-config) instead, not both"))
	}
	return errs
}
