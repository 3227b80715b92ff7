package hacluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/probe"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig is s's admin kubeconfig (which every server writes into its
// data dir once its PKI exists), aimed at s's own API port.
func (c *Cluster) RESTConfig(s *Server) (*rest.Config, error) {
	if s.rest != nil {
		return s.rest, nil
	}
	path := filepath.Join(s.DataDir, "admin.kubeconfig")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("admin kubeconfig not written yet: %w", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	cfg.Host = "https://" + net.JoinHostPort(s.IP, strconv.Itoa(c.Ports.API))
	configmapload.Tune(cfg, "habench")
	s.rest = cfg
	return cfg, nil
}

// Readyz GETs s's /readyz with the admin identity and wants 200.
func (c *Cluster) Readyz(ctx context.Context, s *Server) error {
	cfg, err := c.RESTConfig(s)
	if err != nil {
		return err
	}
	check, closeIdle, err := probe.Readyz(cfg)
	if err != nil {
		return err
	}
	defer closeIdle()
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	return check(ctx)
}
