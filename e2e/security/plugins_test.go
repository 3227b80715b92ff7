package security

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/e2e/harness"
)

var pluginsGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

func pluginObject(name, node, plugin string) *unstructured.Unstructured {
	labels := map[string]any{}
	if node != "" {
		labels["keelson.io/node"] = node
	}
	if plugin != "" {
		labels["keelson.io/node-plugin"] = plugin
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keelson.io/v1alpha1", "kind": "Plugin",
		"metadata": map[string]any{"name": name, "labels": labels},
		"spec":     map[string]any{"scope": "node", "builtin": true},
	}}
}

// TestNodeWritesOnlyItsOwnPluginState: RBAC lets every node write Plugin
// objects (its node plugins' state); the admission policy keeps a worker's
// credentials to PLUGIN.<its own name>. It can neither forge another node's
// state nor touch the leader's plugins.
func TestNodeWritesOnlyItsOwnPluginState(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{NodeName: "sec-server", Plugins: []string{"podgc"}})
	sup := SupervisorOf(s)
	key := NewKey(t)
	creds, err := sup.NodeCredentials(t, ReadToken(t, s.AgentTokenFile(t)), "worker1", key, []string{"worker1"}, "10.200.0.8")
	if err != nil {
		t.Fatalf("node credentials: %v", err)
	}
	admin := dynamic.NewForConfigOrDie(s.RESTConfig(t)).Resource(pluginsGVR)
	nodeCfg := &rest.Config{Host: s.RESTConfig(t).Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: creds.CACert, CertData: creds.ClientCert, KeyData: pemKey(t, key),
	}}
	node := dynamic.NewForConfigOrDie(nodeCfg).Resource(pluginsGVR)
	ctx := context.Background()

	// The policy is in force once a forged object is refused.
	harness.Eventually(t, time.Minute, "the node plugin policy refuses another node's name", func() (bool, string) {
		_, err := node.Create(ctx, pluginObject("announcer.worker2", "worker2", "announcer"), metav1.CreateOptions{})
		return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "its own node plugins' state"), errString(err)
	})

	if _, err := node.Create(ctx, pluginObject("announcer.worker1", "worker1", "announcer"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("the node's own plugin state: %v", err)
	}
	forbidden := func(what string, err error, want string) {
		t.Helper()
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want Forbidden naming %q", what, err, want)
		}
	}
	_, err = node.Create(ctx, pluginObject("scheduler.worker1", "worker1", "announcer"), metav1.CreateOptions{})
	forbidden("a name that is not PLUGIN.NODE", err, "named PLUGIN.NODE")
	leaderish := pluginObject("evil", "worker1", "evil")
	leaderish.Object["spec"] = map[string]any{"builtin": true, "path": "/tmp/evil"}
	_, err = node.Create(ctx, leaderish, metav1.CreateOptions{})
	forbidden("a leader-scoped plugin", err, "named PLUGIN.NODE")

	// The leader's own plugin object, written by the server.
	var podgc *unstructured.Unstructured
	harness.Eventually(t, time.Minute, "the leader publishes podgc's Plugin object", func() (bool, string) {
		podgc, err = admin.Get(ctx, "podgc", metav1.GetOptions{})
		return err == nil, errString(err)
	})
	podgc.SetLabels(map[string]string{"keelson.io/node": "worker1", "keelson.io/node-plugin": "podgc"})
	_, err = node.Update(ctx, podgc, metav1.UpdateOptions{})
	forbidden("relabelling the leader's plugin", err, "")
	_, err = node.UpdateStatus(ctx, podgc, metav1.UpdateOptions{})
	forbidden("the leader's plugin status", err, "")
	if err := node.Delete(ctx, "announcer.worker1", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a node deleted a Plugin object: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
