package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/internal/testproc"
	"github.com/keelson/keelson/plugins/builtin/scheduler"
	"github.com/keelson/keelson/plugins/sdk"
)

// schedulerStarter starts one scheduler process, logging into dir.
type schedulerStarter func(dir string) (*testproc.Process, error)

// keelsonStarter runs keelson's scheduler plugin in a child process of this
// binary (-run-keelson-scheduler), with the admin kubeconfig: the same code
// the server's plugin host runs, minus the go-plugin health stream, and a
// process of its own whose CPU and memory are measured like upstream's.
func keelsonStarter(self, kubeconfig, config string, qps int, profileDir string) schedulerStarter {
	return func(dir string) (*testproc.Process, error) {
		section := map[string]any{}
		if config != "" {
			if err := json.Unmarshal([]byte(config), &section); err != nil {
				return nil, fmt.Errorf("-keelson-config: %w", err)
			}
		}
		section["clientQPS"], section["clientBurst"] = qps, 2*qps
		b, err := json.Marshal(section)
		if err != nil {
			return nil, err
		}
		cfg := string(b)
		args := []string{"-run-keelson-scheduler", kubeconfig, "-keelson-scheduler-config", cfg}
		if profileDir != "" {
			args = append(args, "-profile-dir", profileDir)
		}
		return testproc.Start(testproc.Spec{Name: "keelson-scheduler", Bin: self, Args: args, LogPath: filepath.Join(dir, "keelson-scheduler.log"), ProcessGroup: true})
	}
}

// upstreamStarter runs kube-scheduler with its default profile, leader
// election off, no serving port, and the same client rate limits.
func upstreamStarter(bin, kubeconfig string, qps int) schedulerStarter {
	return func(dir string) (*testproc.Process, error) {
		cfgPath := filepath.Join(dir, "kube-scheduler.yaml")
		cfg := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %q
  qps: %d
  burst: %d
leaderElection:
  leaderElect: false
`, kubeconfig, qps, 2*qps)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return nil, fmt.Errorf("writing %s: %w", cfgPath, err)
		}
		return testproc.Start(testproc.Spec{Name: "kube-scheduler", Bin: bin, Args: []string{"--config", cfgPath, "--secure-port", strconv.Itoa(0)}, LogPath: filepath.Join(dir, "kube-scheduler.log"), ProcessGroup: true})
	}
}

// runKeelsonScheduler is the child mode: keelson's scheduler until SIGTERM.
func runKeelsonScheduler(ctx context.Context, kubeconfig, config, profileDir string, log *slog.Logger) error {
	if profileDir != "" {
		path := filepath.Join(profileDir, fmt.Sprintf("keelson-scheduler-%d.pprof", time.Now().UnixNano()))
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	// Protobuf, as the plugin host's config would give the plugin.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.UserAgent = "keelson-scheduler/schedbench"
	return sdk.RunLocal(ctx, scheduler.Plugin(), sdk.LocalOptions{
		RESTConfig: cfg,
		Config:     []byte(config),
		Logger:     log,
	})
}
