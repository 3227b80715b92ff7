package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keelson/keelson/bench/internal/loopback"
	"github.com/keelson/keelson/bench/internal/probe"
	"github.com/keelson/keelson/internal/testproc"
	"k8s.io/client-go/rest"
)

// keelsonArgs is a single-server keelson on loopback with the embedded
// kube-apiserver and no node agent; everything else is keelson's default.
func keelsonArgs(dataDir string, apiPort, raftPort int, debugListen string) []string {
	args := []string{"server", "--data-dir", dataDir, "--node-name", "bench",
		"--bind-address", "127.0.0.1", "--api-port", strconv.Itoa(apiPort),
		"--raft-bind", loopback.HostPort(raftPort), "--disable-agent"}
	if debugListen != "" {
		args = append(args, "--debug-listen", debugListen)
	}
	return args
}

// startKeelson starts bin in a fresh temp dir under workDir and returns once
// its Kubernetes API answers /readyz with 200, using the admin kubeconfig the
// server writes into its data dir.
func startKeelson(ctx context.Context, bin, workDir, debugListen string, timeout time.Duration) (*stack, error) {
	dir, err := os.MkdirTemp(workDir, "apibench-keelson-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir for keelson under %s: %w", workDir, err)
	}
	s := &stack{label: "keelson", dir: dir}
	ports, err := loopback.FreePorts(2)
	if err != nil {
		s.stop()
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	p, err := testproc.Start(testproc.Spec{Name: "keelson", Bin: bin, Args: keelsonArgs(dataDir, ports[0], ports[1], debugListen), LogPath: filepath.Join(dir, "keelson.log"), ProcessGroup: true})
	if err != nil {
		s.stop()
		return nil, err
	}
	s.procs = append(s.procs, p)

	// The server writes the kubeconfig (atomically) once its PKI exists, so
	// the probe first waits for the file.
	kubeconfig := filepath.Join(dataDir, "admin.kubeconfig")
	var cfg *rest.Config
	var readyz func(context.Context) error
	readyAt, err := s.waitFor(ctx, p, "keelson /readyz", timeout, func(ctx context.Context) error {
		if readyz == nil {
			if _, err := os.Stat(kubeconfig); err != nil {
				return fmt.Errorf("admin kubeconfig not written yet: %w", err)
			}
			c, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			if readyz, _, err = probe.Readyz(c); err != nil {
				return err
			}
			cfg = c
		}
		return readyz(ctx)
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	s.cfg = cfg
	s.readySec = readyAt.Sub(p.Started).Seconds()
	s.stages = []stage{{Name: "keelson start to /readyz 200", Seconds: s.readySec}}
	return s, nil
}
