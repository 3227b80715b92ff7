// Package lifecycle tests the lifecycle controllers (garbage collector,
// namespace, serviceaccount and token, endpoints, endpointslice and
// mirroring) against a real keelson server, the way a user sees them:
// with kubectl and client-go. Pod readiness is driven by the tests
// (patching pod status), as no node agent runs.
package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/endpoints"
	"github.com/keelson/keelson/plugins/builtin/endpointslice"
	"github.com/keelson/keelson/plugins/builtin/endpointslicemirroring"
	"github.com/keelson/keelson/plugins/builtin/garbagecollector"
	"github.com/keelson/keelson/plugins/builtin/namespace"
	"github.com/keelson/keelson/plugins/builtin/serviceaccount"
	"github.com/keelson/keelson/plugins/builtin/token"
	"github.com/keelson/keelson/plugins/sdk"
)

// Generous: the machine is shared and slow at times. These bound waiting
// only; nothing asserts how long a controller took.
const (
	waitTimeout  = 2 * time.Minute
	pollInterval = 200 * time.Millisecond
)

// cluster is a server with the lifecycle plugins running against it.
type cluster struct {
	srv    *harness.Server
	cfg    *rest.Config
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	logDir string
}

// TestLifecycleControllers starts one server and the plugins once, and
// runs every scenario in its own namespace.
func TestLifecycleControllers(t *testing.T) {
	c := startCluster(t)
	t.Run("ServiceAccountAndRootCA", c.testServiceAccountAndRootCA)
	t.Run("LegacyTokenSecret", c.testLegacyTokenSecret)
	t.Run("BackgroundDeletion", c.testBackgroundDeletion)
	t.Run("ForegroundDeletion", c.testForegroundDeletion)
	t.Run("OrphanDeletion", c.testOrphanDeletion)
	t.Run("CustomResourceOwner", c.testCustomResourceOwner)
	t.Run("DanglingOwner", c.testDanglingOwner)
	t.Run("InvalidNamespaceOwnerEvent", c.testInvalidNamespaceOwner)
	t.Run("NamespaceDeletion", c.testNamespaceDeletion)
	t.Run("NamespaceBlockedByFinalizer", c.testNamespaceBlockedByFinalizer)
	t.Run("EndpointsMultiPortNamedPorts", c.testEndpointsMultiPort)
	t.Run("HeadlessPublishNotReady", c.testHeadlessPublishNotReady)
	t.Run("ManualEndpointsMirrored", c.testManualEndpointsMirrored)
	t.Run("UnknownNodeEvent", c.testUnknownNodeEvent)
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	srv := harness.StartServer(t, harness.ServerOptions{})
	cfg := srv.RESTConfig(t)
	// The tests read and write v1 Endpoints on purpose.
	cfg.WarningHandler = rest.NoWarnings{}
	c := &cluster{srv: srv, cfg: cfg, logDir: t.TempDir()}
	var err error
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("clientset: %v", err)
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(srv.DataDir, "pki", "sa.key"))
	if err != nil {
		t.Fatalf("reading the service-account signing key: %v", err)
	}
	tokenCfg, _ := json.Marshal(map[string]string{"serviceAccountKeyPEM": string(key)})
	c.runPlugins(t, map[string]json.RawMessage{token.Name: tokenCfg},
		serviceaccount.Plugin(), token.Plugin(), namespace.Plugin(), garbagecollector.Plugin(),
		endpoints.Plugin(), endpointslice.Plugin(), endpointslicemirroring.Plugin())
	return c
}

// runPlugins runs each plugin in-process with the admin's credentials until
// the test ends, waits until each reports ready, and prints their logs if
// the test failed.
func (c *cluster) runPlugins(t *testing.T, configs map[string]json.RawMessage, plugins ...sdk.Plugin) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ready := make(chan string, len(plugins))
	failed := make(chan error, len(plugins))
	for _, p := range plugins {
		path := filepath.Join(c.logDir, p.Name+".log")
		f, err := os.Create(path)
		if err != nil {
			t.Fatalf("creating plugin log: %v", err)
		}
		var once sync.Once
		wg.Go(func() {
			defer f.Close()
			err := sdk.RunLocal(ctx, p, sdk.LocalOptions{
				RESTConfig: c.cfg,
				Config:     configs[p.Name],
				Logger:     slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Status: func(ok bool, _, _ string) {
					if ok {
						once.Do(func() { ready <- p.Name })
					}
				},
			})
			if err != nil {
				failed <- fmt.Errorf("plugin %s: %w", p.Name, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() || os.Getenv("DEBUGLOGS") != "" {
			for _, p := range plugins {
				path := filepath.Join(c.logDir, p.Name+".log")
				t.Logf("---- tail of plugin %s ----\n%s", p.Name, harness.Tail(path, 40))
			}
		}
	})
	deadline := time.After(waitTimeout)
	for range plugins {
		select {
		case <-ready:
		case err := <-failed:
			t.Fatal(err)
		case <-deadline:
			t.Fatalf("plugins not ready within %s", waitTimeout)
		}
	}
}

// eventually polls check until it returns nil, failing the test with its
// last error after waitTimeout.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, waitTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// newNamespace creates a namespace for one scenario and waits until pods
// can be created in it (its default ServiceAccount exists).
func (c *cluster) newNamespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	_, err := c.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	eventually(t, "default service account in "+name, func() error {
		_, err := c.kube.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	return name
}

// gone returns nil once get reports NotFound.
func gone(get func() error) func() error {
	return func() error {
		err := get()
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		}
		return errors.New("still exists")
	}
}

// kubectl runs kubectl and fails the test unless it succeeds.
func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return c.srv.MustKubectl(t, args...)
}

// kubectlIn runs kubectl with stdin.
func (c *cluster) kubectlIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	r := c.srv.KubectlIn(t, stdin, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s failed:\n%s", strings.Join(args, " "), r)
	}
	return r.Stdout
}
