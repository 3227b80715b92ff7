package metrics

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/keelson/keelson/e2e/harness"
)

// busyScript holds 16 MiB in a shell variable (so the working set shows
// in `kubectl top`, which prints Mi) and spins.
const busyScript = `x=$(dd if=/dev/zero bs=1048576 count=16 2>/dev/null | tr '\0' a); while :; do :; done`

func TestResourceMetrics(t *testing.T) {
	c := startCluster(t)
	ns := c.namespace(t, "top")
	c.shellPod(t, ns, "busy", "loop", busyScript)
	c.shellPod(t, ns, "quiet", "sleeper", "exec sleep 3600")
	running := time.Now()
	t.Run("kubectl top nodes", func(t *testing.T) { c.topNodes(t, running) })
	t.Run("kubectl top pods", func(t *testing.T) { c.topPods(t, ns) })
	t.Run("the metrics API follows RBAC", func(t *testing.T) { c.metricsRBAC(t, ns) })
	t.Run("the agent's metrics endpoints need nodes/metrics", func(t *testing.T) { c.kubeletMetrics(t, ns) })
}

// topRow waits until `kubectl top ARGS --no-headers` prints a row whose
// first cells are key and whose CPU and memory cells (at cpu and mem) are
// not zero; it returns the row.
func (c *cluster) topRow(t *testing.T, key []string, cpu, mem int, args ...string) []string {
	t.Helper()
	var row []string
	args = append([]string{"top"}, append(args, "--no-headers")...)
	harness.Eventually(t, waitTimeout, "kubectl "+strings.Join(args, " ")+" shows "+strings.Join(key, " ")+" busy", func() (bool, string) {
		r := c.kubectl(t).RunIn(t, "", args...)
		if r.ExitCode != 0 {
			return false, r.String()
		}
		for _, line := range strings.Split(r.Stdout, "\n") {
			f := strings.Fields(line)
			if len(f) > mem && strings.Join(f[:len(key)], " ") == strings.Join(key, " ") {
				row = f
				return nonZero(f[cpu]) && nonZero(f[mem]), r.Stdout
			}
		}
		return false, r.Stdout
	})
	return row
}

func nonZero(q string) bool {
	v, err := resource.ParseQuantity(q)
	return err == nil && !v.IsZero()
}

func (c *cluster) topNodes(t *testing.T, running time.Time) {
	// NAME CPU(cores) CPU(%) MEMORY(bytes) MEMORY(%)
	row := c.topRow(t, []string{c.node}, 1, 3, "nodes")
	t.Logf("kubectl top nodes answered %v after the pods ran: %v", time.Since(running).Round(time.Second), row)
}

func (c *cluster) topPods(t *testing.T, ns string) {
	c.topRow(t, []string{"busy"}, 1, 2, "pods", "-n", ns, "-l", "app=busy")
	out := c.kubectl(t).Must(t, "top", "pods", "-n", ns, "-l", "app=busy", "--no-headers")
	if strings.Contains(out, "quiet") {
		t.Errorf("the label selector app=busy shows the quiet pod:\n%s", out)
	}
	row := c.topRow(t, []string{"busy", "loop"}, 2, 3, "pods", "-n", ns, "-l", "app=busy", "--containers")
	t.Logf("--containers: %v", row)
	c.topRow(t, []string{ns, "busy"}, 2, 3, "pods", "-A")
	all := c.kubectl(t).Must(t, "top", "pods", "-A", "--no-headers")
	if !strings.Contains(all, "quiet") {
		t.Errorf("kubectl top pods -A lacks the quiet pod:\n%s", all)
	}
}

// token makes a ServiceAccount in ns and returns a token of it.
func (c *cluster) token(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := c.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func (c *cluster) bindCluster(t *testing.T, ns, sa, role string, namespaced bool) {
	t.Helper()
	ctx := context.Background()
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}
	var err error
	if namespaced {
		_, err = c.client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa}, Subjects: subject, RoleRef: ref}, metav1.CreateOptions{})
	} else {
		_, err = c.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + sa}, Subjects: subject, RoleRef: ref}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// metricsRBAC: a ServiceAccount bound to view in the namespace reads its
// pods' metrics (view aggregates system:aggregated-metrics-reader) but not
// the nodes'.
func (c *cluster) metricsRBAC(t *testing.T, ns string) {
	c.bindCluster(t, ns, "viewer", "view", true)
	tok := c.token(t, ns, "viewer")
	cfg := rest.AnonymousClientConfig(c.restConfig(t))
	cfg.BearerToken = tok
	mc, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	harness.Eventually(t, waitTimeout, "a viewer of "+ns+" reads its pods' metrics", func() (bool, string) {
		pm, err := mc.MetricsV1beta1().PodMetricses(ns).Get(ctx, "busy", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		if len(pm.Containers) != 1 || pm.Containers[0].Name != "loop" {
			return false, fmt.Sprintf("containers %+v", pm.Containers)
		}
		u := pm.Containers[0].Usage
		return !u.Cpu().IsZero() && u.Memory().Value() >= 16<<20, fmt.Sprintf("usage %v window %s", u, pm.Window.Duration)
	})
	_, err = mc.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("a viewer of one namespace listed node metrics: err %v, want Forbidden", err)
	}
	_, err = mc.MetricsV1beta1().PodMetricses("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("a viewer of %s listed pod metrics in default: err %v, want Forbidden", ns, err)
	}
}

// kubeletMetrics: /metrics/resource answers a token with nodes/metrics
// and refuses one without, as kubelet does.
func (c *cluster) kubeletMetrics(t *testing.T, ns string) {
	ctx := context.Background()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "node-metrics-scraper"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}}}}
	if _, err := c.client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.bindCluster(t, ns, "scraper", role.Name, false)
	scraper := c.token(t, ns, "scraper")
	nobody := c.token(t, ns, "nobody")
	if code, body := c.kubeletGet(t, "/metrics/resource", nobody); code != http.StatusForbidden {
		t.Errorf("/metrics/resource without nodes/metrics: %d %s, want 403", code, body)
	}
	want := fmt.Sprintf(`container_cpu_usage_seconds_total{container="loop",namespace=%q,pod="busy"}`, ns)
	code, body := c.kubeletGet(t, "/metrics/resource", scraper)
	if code != http.StatusOK || !strings.Contains(body, want) || !strings.Contains(body, "node_memory_working_set_bytes ") {
		t.Errorf("/metrics/resource with nodes/metrics: %d, want 200 with %s:\n%s", code, want, body)
	}
	for path, want := range map[string]string{
		"/metrics/cadvisor": `container_memory_working_set_bytes{container="loop",id=`,
		"/metrics/probes":   "",
	} {
		code, body := c.kubeletGet(t, path, scraper)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want 200 with %q:\n%s", path, code, want, body)
		}
	}
}

// TestStoreMetrics: the server's /metrics (kube-apiserver's) carries the
// store's metrics, and they move when the store is written.
func TestStoreMetrics(t *testing.T) {
	c := startCluster(t)
	before := c.scrape(t)
	for _, name := range []string{`keelson_raft_index{kind="applied"}`, "keelson_store_keys", "keelson_store_watchers",
		`keelson_raft_state{state="Leader"}`, `keelson_cluster_members{role="server",status="alive"}`,
		`keelson_cluster_members{role="agent",status="alive"}`, "keelson_raft_commit_duration_seconds_count",
		"keelson_raft_apply_duration_seconds_count", "keelson_raft_leader_changes_total", "keelson_store_size_bytes"} {
		if before[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, before[name])
		}
	}
	c.namespace(t, "written")
	after := c.scrape(t)
	for _, name := range []string{`keelson_raft_index{kind="applied"}`, "keelson_store_keys", "keelson_raft_commit_duration_seconds_count", "keelson_store_revision"} {
		if after[name] <= before[name] {
			t.Errorf("%s did not move with writes: %v then %v", name, before[name], after[name])
		}
	}
}

// scrape reads the server's /metrics as the admin: each sample by its
// name and labels as written.
func (c *cluster) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, line := range strings.Split(c.kubectl(t).Must(t, "get", "--raw", "/metrics"), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err == nil {
			out[name] = v
		}
	}
	return out
}
