// Package kcm tests the kube-controller-manager controllers that keep API
// objects themselves consistent (ClusterRole aggregation, resource quota
// status, certificate signing and approval) against a real keelson server running their plugins, the way a
// user sees them: with kubectl.
package kcm

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/clusterroleaggregation"
	"github.com/keelson/keelson/plugins/builtin/csrapproving"
	"github.com/keelson/keelson/plugins/builtin/csrcleaner"
	"github.com/keelson/keelson/plugins/builtin/csrsigning"
	"github.com/keelson/keelson/plugins/builtin/resourcequota"
	"github.com/keelson/keelson/plugins/builtin/serviceaccount"
	"github.com/keelson/keelson/plugins/builtin/servicecidr"
	"github.com/keelson/keelson/plugins/builtin/vapstatus"
)

// waitTimeout bounds waiting on a busy machine; nothing asserts how long a
// controller took.
const waitTimeout = 2 * time.Minute

var plugins = []string{serviceaccount.Name, clusterroleaggregation.Name, resourcequota.Name, csrsigning.Name, csrapproving.Name,
	csrcleaner.Name, servicecidr.Name, vapstatus.Name}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

func TestControllers(t *testing.T) {
	srv := harness.StartServer(t, harness.ServerOptions{Plugins: plugins})
	dyn, err := dynamic.NewForConfig(srv.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range plugins {
		harness.Eventually(t, waitTimeout, "plugin "+name+" ready", func() (bool, string) {
			obj, err := dyn.Resource(pluginGVR).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			ready, _, _ := unstructured.NestedBool(obj.Object, "status", "ready")
			return ready, fmt.Sprint(obj.Object["status"])
		})
	}
	t.Run("ClusterRoleAggregation", func(t *testing.T) { testAggregation(t, srv) })
	t.Run("ResourceQuota", func(t *testing.T) { testQuota(t, srv) })
	t.Run("Certificates", func(t *testing.T) { testCertificates(t, srv) })
	t.Run("ServiceCIDR", func(t *testing.T) { testServiceCIDR(t, srv) })
	t.Run("ValidatingAdmissionPolicyStatus", func(t *testing.T) { testPolicyStatus(t, srv) })
	t.Run("TrustBundleAndCleaners", func(t *testing.T) { testTrustBundle(t, srv) })
	t.Run("PluginMetrics", func(t *testing.T) { testPluginMetrics(t, srv) })
}

func testAggregation(t *testing.T, srv *harness.Server) {
	srv.MustKubectl(t, "create", "namespace", "team")
	srv.MustKubectl(t, "create", "rolebinding", "alice", "--clusterrole=edit", "--user=alice", "-n", "team")
	harness.Eventually(t, waitTimeout, "alice may create deployments through edit", func() (bool, string) {
		r := srv.Kubectl(t, "auth", "can-i", "create", "deployments", "-n", "team", "--as=alice")
		return strings.TrimSpace(r.Stdout) == "yes", r.String()
	})
	if r := srv.Kubectl(t, "auth", "can-i", "create", "deployments", "-n", "default", "--as=alice"); strings.TrimSpace(r.Stdout) != "no" {
		t.Errorf("alice may create deployments outside team:\n%s", r)
	}
	// A CRD's role, written as a manifest: `kubectl create clusterrole`
	// refuses resources the server does not serve yet.
	if r := srv.KubectlIn(t, crontabReader, "create", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating the crontab-reader role:\n%s", r)
	}
	harness.Eventually(t, waitTimeout, "crontabs in view", func() (bool, string) {
		r := srv.Kubectl(t, "get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}")
		return strings.Contains(r.Stdout, "crontabs"), r.String()
	})
	// view is aggregated into edit (it carries aggregate-to-edit), so the
	// rule reaches edit too. (kubectl auth can-i cannot ask about a resource
	// the server does not serve, so the role is read instead.)
	harness.Eventually(t, waitTimeout, "crontabs in edit", func() (bool, string) {
		r := srv.Kubectl(t, "get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}")
		return strings.Contains(r.Stdout, "crontabs"), r.String()
	})
	srv.MustKubectl(t, "delete", "clusterrole", "crontab-reader")
	harness.Eventually(t, waitTimeout, "crontabs gone from view", func() (bool, string) {
		r := srv.Kubectl(t, "get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}")
		return r.ExitCode == 0 && !strings.Contains(r.Stdout, "crontabs"), r.String()
	})
}

const crontabReader = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: crontab-reader
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: ["stable.example.com"]
  resources: ["crontabs"]
  verbs: ["get", "list", "watch"]
`

const podYAML = `apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
`

func testQuota(t *testing.T, srv *harness.Server) {
	srv.MustKubectl(t, "create", "namespace", "quota")
	harness.Eventually(t, waitTimeout, "default service account and root CA", func() (bool, string) {
		r := srv.Kubectl(t, "get", "serviceaccount/default", "configmap/kube-root-ca.crt", "-n", "quota")
		return r.ExitCode == 0, r.String()
	})
	srv.MustKubectl(t, "create", "quota", "pods", "--hard=pods=2,count/configmaps=10", "-n", "quota")
	harness.Eventually(t, waitTimeout, "quota status", func() (bool, string) {
		r := srv.Kubectl(t, "get", "quota", "pods", "-n", "quota", "-o", "jsonpath={.status.hard.pods}/{.status.used.pods}")
		return r.Stdout == "2/0", r.String()
	})
	// kube-root-ca.crt and one of ours.
	srv.MustKubectl(t, "create", "configmap", "one", "-n", "quota")
	harness.Eventually(t, waitTimeout, "configmap count", func() (bool, string) {
		r := srv.Kubectl(t, "get", "quota", "pods", "-n", "quota", "-o", "jsonpath={.status.used.count/configmaps}")
		return r.Stdout == "2", r.String()
	})
	for _, name := range []string{"p1", "p2"} {
		if r := srv.KubectlIn(t, fmt.Sprintf(podYAML, name), "create", "-n", "quota", "-f", "-"); r.ExitCode != 0 {
			t.Fatalf("creating %s:\n%s", name, r)
		}
	}
	r := srv.KubectlIn(t, fmt.Sprintf(podYAML, "p3"), "create", "-n", "quota", "-f", "-")
	want := `pods "p3" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2`
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("third pod: want refusal %q, got:\n%s", want, r)
	}
	harness.Eventually(t, waitTimeout, "describe shows used/hard", func() (bool, string) {
		out := srv.MustKubectl(t, "describe", "quota", "pods", "-n", "quota")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "pods" && f[1] == "2" && f[2] == "2" {
				return true, out
			}
		}
		return false, out
	})
	// A deleted pod gives its charge back (admission never does).
	srv.MustKubectl(t, "delete", "pod", "p1", "-n", "quota", "--grace-period=0", "--force")
	harness.Eventually(t, waitTimeout, "used pods back to 1", func() (bool, string) {
		r := srv.Kubectl(t, "get", "quota", "pods", "-n", "quota", "-o", "jsonpath={.status.used.pods}")
		return r.Stdout == "1", r.String()
	})
	if r := srv.KubectlIn(t, fmt.Sprintf(podYAML, "p3"), "create", "-n", "quota", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("third pod after a deletion:\n%s", r)
	}
}
