package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/keelson/keelson/core/pki"
)

// expiryWarnInterval is how often a running server repeats its warnings
// about certificates that need an operator (a CA close to expiry).
const expiryWarnInterval = 24 * time.Hour

// renewCertificates reissues this server's leaf certificates once they pass
// two thirds of their lifetime, for as long as ctx lasts, and warns about
// those it cannot renew. Every consumer reloads the files without a restart:
// kube-apiserver watches its serving, client-CA and front-proxy files and
// re-reads its kubelet client certificate; the raft port and the supervisor
// read the peer certificate through pki.CertReloader; the admin kubeconfig,
// which embeds its certificate, is rewritten here.
func (s *Server) renewCertificates(ctx context.Context) error {
	if err := s.bundle.WarnExpiring(s.pkiOpts); err != nil {
		s.log.Warn("checking certificate expiry", "err", err)
	}
	lastWarn := time.Now()
	tick := time.NewTicker(pki.RenewCheckInterval(s.leafLifetime()))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		renewed, err := s.bundle.Renew(s.pkiOpts)
		if err != nil {
			// Nothing is lost yet: the current certificates stay in use and
			// the next tick tries again, long before they expire.
			s.log.Error("renewing certificates", "err", err)
			continue
		}
		if len(renewed) > 0 {
			s.log.Info("renewed certificates on the running server", "files", renewed)
		}
		if slices.Contains(renewed, s.bundle.Admin.CertFile) && !s.cfg.DisableAPIServer {
			if err := s.writeAdminKubeconfig(); err != nil {
				s.log.Error("rewriting the admin kubeconfig after renewal", "err", err)
			}
		}
		if time.Since(lastWarn) >= expiryWarnInterval {
			lastWarn = time.Now()
			if err := s.bundle.WarnExpiring(s.pkiOpts); err != nil {
				s.log.Warn("checking certificate expiry", "err", err)
			}
		}
	}
}

// leafLifetime is the lifetime of the leaf certificates this server issues.
func (s *Server) leafLifetime() time.Duration {
	if s.opts.LeafCertLifetime > 0 {
		return s.opts.LeafCertLifetime
	}
	return pki.LeafLifetime
}

// encryptionConfig is the EncryptionConfiguration kube-apiserver runs
// with: the operator's file, the generated one, or none when disabled.
func (s *Server) encryptionConfig() (string, error) {
	a := s.cfg.APIServer
	switch {
	case a.DisableSecretsEncryption:
		s.log.Warn("Secrets are stored in clear in the raft log, snapshots and backups (apiServer.disableSecretsEncryption)")
		return "", nil
	case a.EncryptionConfig != "":
		if err := pki.CheckEncryptionConfig(a.EncryptionConfig); err != nil {
			return "", fmt.Errorf("apiServer.encryptionConfig (--encryption-config): %w", err)
		}
		return a.EncryptionConfig, nil
	}
	return s.bundle.EncryptionConfig, nil
}
