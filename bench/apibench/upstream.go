package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keelson/keelson/bench/internal/loopback"
	"github.com/keelson/keelson/bench/internal/probe"
	"github.com/keelson/keelson/bench/internal/upstreamstack"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/internal/testproc"
)

// kubeAPIServerArgs is the upstream kube-apiserver's command line: keelson's
// own (upstreamstack.APIServerConfig). Only the storage differs: etcd over
// TCP here, the keelson store's unix socket there.
func kubeAPIServerArgs(b *pki.Bundle, dataDir string, securePort int, etcdURL string) []string {
	return upstreamstack.APIServerConfig(b, dataDir, securePort, etcdURL).Args()
}

// startUpstream makes the certificates, starts etcd, waits for its /health,
// then starts kube-apiserver on it and waits for /readyz 200. The
// certificates are made before the clock starts: keelson makes its own as
// part of its startup, so this favours upstream slightly.
func startUpstream(ctx context.Context, log *slog.Logger, apiserverBin, etcdBin, workDir string, timeout time.Duration) (*stack, error) {
	dir, err := os.MkdirTemp(workDir, "apibench-upstream-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir for upstream under %s: %w", workDir, err)
	}
	s := &stack{label: "upstream", dir: dir}
	if err := s.startUpstream(ctx, log, apiserverBin, etcdBin, timeout); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *stack) startUpstream(ctx context.Context, log *slog.Logger, apiserverBin, etcdBin string, timeout time.Duration) error {
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	pkiStart := time.Now()
	bundle, err := pki.Ensure(filepath.Join(s.dir, "pki"), pki.Options{
		ServiceCIDR: config.DefaultServer().APIServer.ServiceCIDR,
		IPs:         []net.IP{net.IPv4(127, 0, 0, 1)},
		Logger:      slog.New(slog.DiscardHandler), // one line per file; the summary below is enough
	})
	if err != nil {
		return fmt.Errorf("certificates for upstream kube-apiserver: %w", err)
	}
	kubeconfig := filepath.Join(s.dir, "admin.kubeconfig")
	if _, err := pki.WriteKubeconfig(kubeconfig, "https://"+loopback.HostPort(apiPort), bundle.CA.CertFile, bundle.Admin); err != nil {
		return fmt.Errorf("admin kubeconfig for upstream: %w", err)
	}
	if s.cfg, err = loadKubeconfig(kubeconfig); err != nil {
		return err
	}
	readyz, _, err := probe.Readyz(s.cfg)
	if err != nil {
		return err
	}
	log.Info("upstream certificates made (not counted in time to ready)", "seconds", time.Since(pkiStart).Seconds())

	etcd, err := testproc.Start(testproc.Spec{Name: "etcd", Bin: etcdBin, Args: upstreamstack.EtcdArgs(filepath.Join(s.dir, "etcd"), "http://"+loopback.HostPort(etcdClient), "http://"+loopback.HostPort(etcdPeer)), LogPath: filepath.Join(s.dir, "etcd.log"), ProcessGroup: true})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, etcd)
	health := "http://" + loopback.HostPort(etcdClient) + "/health"
	plain := &http.Client{Transport: &http.Transport{Proxy: nil}}
	etcdAt, err := s.waitFor(ctx, etcd, "etcd /health", timeout, func(ctx context.Context) error {
		return probe.HTTPOK(ctx, plain, health)
	})
	if err != nil {
		return err
	}

	kcfg := upstreamstack.APIServerConfig(bundle, s.dir, apiPort, "http://"+loopback.HostPort(etcdClient))
	if err := kcfg.WriteAdmissionConfig(); err != nil {
		return err
	}
	kas, err := testproc.Start(testproc.Spec{Name: "kube-apiserver", Bin: apiserverBin, Args: kcfg.Args(), LogPath: filepath.Join(s.dir, "kube-apiserver.log"), ProcessGroup: true})
	if err != nil {
		return err
	}
	s.procs = append(s.procs, kas)
	readyAt, err := s.waitFor(ctx, kas, "kube-apiserver /readyz", timeout, readyz)
	if err != nil {
		return err
	}
	s.readySec = readyAt.Sub(etcd.Started).Seconds()
	s.stages = []stage{
		{Name: "etcd start to /health 200", Seconds: etcdAt.Sub(etcd.Started).Seconds()},
		{Name: "kube-apiserver start to /readyz 200", Seconds: readyAt.Sub(kas.Started).Seconds()},
	}
	return nil
}
