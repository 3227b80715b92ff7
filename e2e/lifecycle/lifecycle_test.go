// Package lifecycle tests the lifecycle controllers (garbage collector,
// namespace, serviceaccount and token, endpoints, endpointslice and
// mirroring) against a real keelson server, the way a user sees them:
// with kubectl and client-go. Pod readiness is driven by the tests
// (patching pod status), as no node agent runs.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
)

// Generous: the machine is shared and slow at times. These bound waiting
// only; nothing asserts how long a controller took.
const (
	waitTimeout  = 2 * time.Minute
	pollInterval = 200 * time.Millisecond
)

// cluster is a server running the lifecycle plugins.
type cluster struct {
	srv  *harness.Server
	cfg  *rest.Config
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

// TestLifecycleControllers starts one server with the plugins once, and
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

// lifecyclePlugins are the plugins under test; the server runs them (and no
// other built-in) through its plugin host, each as its own process with its
// own least-privilege identity.
var lifecyclePlugins = []string{serviceaccount.Name, token.Name, namespace.Name, garbagecollector.Name,
	endpoints.Name, endpointslice.Name, endpointslicemirroring.Name}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	srv := harness.StartServer(t, harness.ServerOptions{Plugins: lifecyclePlugins})
	cfg := srv.RESTConfig(t)
	// The tests read and write v1 Endpoints on purpose.
	cfg.WarningHandler = rest.NoWarnings{}
	c := &cluster{srv: srv, cfg: cfg}
	var err error
	if c.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("clientset: %v", err)
	}
	if c.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	for _, name := range lifecyclePlugins {
		eventually(t, "plugin "+name+" ready", func() error {
			st, err := c.pluginStatus(name)
			if err != nil {
				return err
			}
			if ready, _, _ := unstructured.NestedBool(st, "ready"); !ready {
				return fmt.Errorf("status %v", st)
			}
			return nil
		})
	}
	t.Cleanup(func() {
		// No plugin crashed along the way.
		for _, name := range lifecyclePlugins {
			st, err := c.pluginStatus(name)
			if err != nil {
				t.Errorf("plugin %s: %v", name, err)
				continue
			}
			if n, _, _ := unstructured.NestedInt64(st, "restarts"); n != 0 {
				t.Errorf("plugin %s restarted %d times: %v", name, n, st)
			}
		}
	})
	return c
}

// pluginStatus is the status the host publishes for a plugin.
func (c *cluster) pluginStatus(name string) (map[string]any, error) {
	obj, err := c.dyn.Resource(pluginGVR).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	st, _, _ := unstructured.NestedMap(obj.Object, "status")
	return st, nil
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
