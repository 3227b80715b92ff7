// Package keelsonproc starts a single keelson server for a benchmark: on
// loopback, in a fresh data dir, without a node agent, and returns once its
// Kubernetes API is ready. PluginsRunning tells when its plugins are too.
package keelsonproc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keelson/keelson/bench/internal/loopback"
	"github.com/keelson/keelson/internal/testproc"
	"github.com/keelson/keelson/plugins/host"
)

// stopTimeout is how long the server gets to exit after SIGTERM.
const stopTimeout = 20 * time.Second

// Server is a running keelson server.
type Server struct {
	Proc       *testproc.Process
	Dir        string // temp dir holding the data dir and the log; removed by Stop
	DataDir    string
	Kubeconfig string // the admin kubeconfig
	// SerfAddr is the server's gossip address, for members joining its pool.
	SerfAddr string
	// REST reaches the API as the admin, with QPS limits raised for load.
	REST *rest.Config
	// Ready is how long the server took from start to /readyz 200.
	Ready time.Duration
}

// Start runs `bin server` with extraArgs appended (e.g. --disable-plugin
// '*') in a new temp dir under workDir.
func Start(ctx context.Context, bin, workDir string, timeout time.Duration, extraArgs ...string) (*Server, error) {
	dir, err := os.MkdirTemp(workDir, "keelson-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir under %s: %w", workDir, err)
	}
	s := &Server{Dir: dir, DataDir: filepath.Join(dir, "data")}
	s.Kubeconfig = filepath.Join(s.DataDir, "admin.kubeconfig")
	ports, err := loopback.FreePorts(4)
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.SerfAddr = loopback.HostPort(ports[2])
	args := append([]string{"server", "--data-dir", s.DataDir, "--node-name", "bench",
		"--bind-address", "127.0.0.1", "--api-port", strconv.Itoa(ports[0]),
		"--raft-bind", loopback.HostPort(ports[1]), "--serf-port", strconv.Itoa(ports[2]),
		"--supervisor-port", strconv.Itoa(ports[3]), "--disable-agent"}, extraArgs...)
	if s.Proc, err = testproc.Start(testproc.Spec{Name: "keelson", Bin: bin, Args: args, LogPath: filepath.Join(dir, "keelson.log"), ProcessGroup: true}); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.waitReady(ctx, timeout); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	return s.Proc.WaitReady(ctx, timeout, 50*time.Millisecond, func(ctx context.Context) error {
		if s.REST == nil {
			cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
			if err != nil {
				return err
			}
			cfg.QPS, cfg.Burst = 5000, 5000
			s.REST = cfg
		}
		cs, err := kubernetes.NewForConfig(s.REST)
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			return fmt.Errorf("/readyz: %v %s", err, body)
		}
		s.Ready = time.Since(s.Proc.Started)
		return nil
	})
}

// Stop stops the server and removes its temp dir.
func (s *Server) Stop() {
	if s.Proc != nil {
		s.Proc.Stop(stopTimeout)
	}
	// A server stopped in time removes its plugins' socket and executable
	// directories itself; one killed after stopTimeout leaves them.
	_ = host.RemoveRunDirs(s.DataDir)
	_ = os.RemoveAll(s.Dir)
}

// PluginGVR is the resource of keelson's Plugin objects: one per plugin,
// with the host's view of it in its status.
var PluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// PluginsRunning says whether every Plugin object reports state running
// (the leader has launched them all and each answered its first health
// check), with a progress line for the caller's log.
func PluginsRunning(ctx context.Context, dyn dynamic.Interface) (bool, string) {
	list, err := dyn.Resource(PluginGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	running := 0
	for _, p := range list.Items {
		if st, _, _ := unstructured.NestedString(p.Object, "status", "state"); st == "running" {
			running++
		}
	}
	return len(list.Items) > 0 && running == len(list.Items), fmt.Sprintf("%d of %d plugins running", running, len(list.Items))
}
