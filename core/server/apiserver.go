package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keelson/keelson/core/apiserver"
	"github.com/keelson/keelson/core/pki"
)

// AdminKubeconfig is where a server writes the admin kubeconfig; `keelson
// kubectl` reads it from the default data dir.
func AdminKubeconfig(dataDir string) string { return filepath.Join(dataDir, "admin.kubeconfig") }

// runAPIServer ensures the cluster PKI and admin kubeconfig, then runs the
// embedded kube-apiserver on the store's unix socket until ctx ends.
func (s *Server) runAPIServer(ctx context.Context, start time.Time, ready chan<- struct{}) error {
	cfg := s.cfg
	bundle := s.bundle
	url := s.localAPIURL()
	kubeconfig := AdminKubeconfig(cfg.DataDir)
	if err := s.writeAdminKubeconfig(); err != nil {
		return err
	}
	s.log.Info("admin kubeconfig written", "path", kubeconfig)
	encryption, err := s.encryptionConfig()
	if err != nil {
		return err
	}
	var certReload time.Duration
	if s.opts.LeafCertLifetime > 0 {
		certReload = pki.RenewCheckInterval(s.opts.LeafCertLifetime)
	}

	advertise := ""
	if ip := net.ParseIP(cfg.AdvertiseIP()); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		// kube-apiserver refuses loopback endpoints for the kubernetes
		// service; with none given it picks the default-route address.
		advertise = ip.String()
	}
	return apiserver.Run(ctx, apiserver.Config{
		DataDir:            cfg.DataDir,
		BindAddress:        cfg.BindAddress,
		AdvertiseAddress:   advertise,
		SecurePort:         cfg.APIServer.Port,
		ServiceCIDR:        cfg.APIServer.ServiceCIDR,
		NodePortRange:      cfg.APIServer.NodePortRange,
		ClusterDomain:      cfg.APIServer.ClusterDomain,
		EtcdServers:        []string{"unix://" + cfg.EtcdSocket()},
		Bundle:             bundle,
		EncryptionConfig:   encryption,
		CertReloadInterval: certReload,
		Identity:           cfg.NodeName,
		ExtraArgs:          cfg.APIServer.ExtraArgs,
		PodSecurity: apiserver.PodSecurity{
			Enforce: cfg.APIServer.PodSecurity.Enforce, Warn: cfg.APIServer.PodSecurity.Warn,
			Audit: cfg.APIServer.PodSecurity.Audit, ExemptNamespaces: cfg.APIServer.PodSecurity.ExemptNamespaces,
		},
		CurrentTerm: s.raft.Term,
		Logger:      s.log,
	}, func(elapsed time.Duration) {
		close(ready)
		s.log.Info("keelson server ready", "elapsed", time.Since(start).Round(time.Millisecond),
			"apiserver_elapsed", elapsed.Round(time.Millisecond), "api", url,
			"try", fmt.Sprintf("keelson kubectl --kubeconfig %s get nodes,namespaces", kubeconfig))
	})
}

// localAPIURL is this server's API as its own admin kubeconfig reaches it.
func (s *Server) localAPIURL() string {
	return "https://" + net.JoinHostPort(apiserver.LocalHost(s.cfg.BindAddress), strconv.Itoa(s.cfg.APIServer.Port))
}

// writeAdminKubeconfig (re)writes the admin kubeconfig from the current admin
// certificate; it is left alone when nothing changed.
func (s *Server) writeAdminKubeconfig() error {
	path := AdminKubeconfig(s.cfg.DataDir)
	if _, err := pki.WriteKubeconfig(path, s.localAPIURL(), s.bundle.CA.CertFile, s.bundle.Admin); err != nil {
		return fmt.Errorf("writing admin kubeconfig %s: %w", path, err)
	}
	return nil
}
