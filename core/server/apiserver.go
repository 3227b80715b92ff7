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
	url := "https://" + net.JoinHostPort(apiserver.LocalHost(cfg.BindAddress), strconv.Itoa(cfg.APIServer.Port))
	kubeconfig := AdminKubeconfig(cfg.DataDir)
	if _, err := pki.WriteKubeconfig(kubeconfig, url, bundle.CA.CertFile, bundle.Admin); err != nil {
		return fmt.Errorf("writing admin kubeconfig %s: %w", kubeconfig, err)
	}
	s.log.Info("admin kubeconfig written", "path", kubeconfig)

	advertise := ""
	if ip := net.ParseIP(cfg.AdvertiseIP()); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
		// kube-apiserver refuses loopback endpoints for the kubernetes
		// service; with none given it picks the default-route address.
		advertise = ip.String()
	}
	return apiserver.Run(ctx, apiserver.Config{
		DataDir:          cfg.DataDir,
		BindAddress:      cfg.BindAddress,
		AdvertiseAddress: advertise,
		SecurePort:       cfg.APIServer.Port,
		ServiceCIDR:      cfg.APIServer.ServiceCIDR,
		NodePortRange:    cfg.APIServer.NodePortRange,
		ClusterDomain:    cfg.APIServer.ClusterDomain,
		EtcdServers:      []string{"unix://" + cfg.EtcdSocket()},
		Bundle:           bundle,
		ExtraArgs:        cfg.APIServer.ExtraArgs,
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
