package e2e

import (
	"crypto/tls"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/host"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAPIServer runs one server for every check a kubectl or client-go user
// would make; starting kube-apiserver costs seconds, so they share it. The
// subtests run in order and the last one kills and restarts the server.
//
// The compaction subtest decides when history goes: kube-apiserver's own
// compactor runs only after an hour. It is not switched off (interval 0)
// because then kube-apiserver also stops watching compact_rev_key, and its
// watch cache would never learn of a compaction. Pod templates bypass the
// watch cache, so that subtest also reaches Keelson's storage directly.
func TestAPIServer(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{KubeAPIServerArgs: map[string]string{
		"etcd-compaction-interval": "1h",
		"watch-cache-sizes":        "podtemplates#0",
	}})

	for _, tc := range []struct {
		name string
		run  func(*testing.T, *harness.Server)
	}{
		{"anonymous request is unauthorized", testAnonymous},
		{"version", testVersion},
		{"default namespaces and kubernetes service", testDefaults},
		{"api-resources", testAPIResources},
		{"explain", testExplain},
		{"apply client-side", testApplyClientSide},
		{"apply server-side", testApplyServerSide},
		{"label selector", testLabelSelector},
		{"field selector", testFieldSelector},
		{"watch prints new objects", testKubectlWatch},
		{"service cluster IP", testServiceClusterIP},
		{"invalid names", testInvalidNames},
		{"stale update conflicts", testConflict},
		{"compacted resource version is gone", testCompacted},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, s) }) && !s.Running() {
			t.Fatal("the server exited; skipping the rest")
		}
	}
	// Last: it restarts the server, and checks what the others left behind.
	t.Run("restart keeps objects and credentials", func(t *testing.T) { testRestart(t, s) })
}

// testNamespaces are the namespaces subtests create; the restart subtest
// compares their contents across the restart.
var testNamespaces = []string{"apply-csa", "apply-ssa", "labels", "fieldsel", "watch", "client"}

// createNamespace creates a namespace and its default ServiceAccount, which
// pods need and no controller creates yet.
func createNamespace(t *testing.T, s *harness.Server, ns string) {
	t.Helper()
	s.MustKubectl(t, "create", "namespace", ns)
	s.MustKubectl(t, "create", "serviceaccount", "default", "-n", ns)
}

func testAnonymous(t *testing.T, s *harness.Server) {
	c := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	for _, path := range []string{"/api", "/api/v1/namespaces", "/readyz"} {
		url := "https://127.0.0.1:" + strconv.Itoa(s.APIPort) + path
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s without credentials: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %s, want 401 Unauthorized", url, resp.Status)
		}
	}
}

func testVersion(t *testing.T, s *harness.Server) {
	out := s.MustKubectl(t, "version")
	if !regexp.MustCompile(`(?m)^Server Version: v1\.37\.2\+keelson\S*$`).MatchString(out) {
		t.Errorf("kubectl version does not show server v1.37.2+keelson...:\n%s", out)
	}
}

func testDefaults(t *testing.T, s *harness.Server) {
	out := s.MustKubectl(t, "get", "namespaces", "-o", "name")
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if !slices.Contains(lines(out), "namespace/"+ns) {
			t.Errorf("kubectl get namespaces lacks %s:\n%s", ns, out)
		}
	}
	ip := s.MustKubectl(t, "get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	if !inServiceCIDR(ip) {
		t.Errorf("service kubernetes has cluster IP %q, want one in %s", ip, serviceCIDR)
	}
	table := s.MustKubectl(t, "get", "svc", "kubernetes")
	if !strings.Contains(table, "CLUSTER-IP") || !strings.Contains(table, ip) {
		t.Errorf("kubectl get svc kubernetes does not show its cluster IP %s:\n%s", ip, table)
	}
}

func testAPIResources(t *testing.T, s *harness.Server) {
	namespaced := lines(s.MustKubectl(t, "api-resources", "--namespaced=true", "-o", "name"))
	cluster := lines(s.MustKubectl(t, "api-resources", "--namespaced=false", "-o", "name"))
	for _, r := range []string{"pods", "configmaps", "services", "secrets", "deployments.apps", "replicasets.apps"} {
		if !slices.Contains(namespaced, r) || slices.Contains(cluster, r) {
			t.Errorf("%s: want it among namespaced resources only (namespaced: %v)", r, namespaced)
		}
	}
	for _, r := range []string{"namespaces", "nodes", "persistentvolumes", "clusterroles.rbac.authorization.k8s.io"} {
		if !slices.Contains(cluster, r) || slices.Contains(namespaced, r) {
			t.Errorf("%s: want it among cluster-scoped resources only (cluster-scoped: %v)", r, cluster)
		}
	}
}

func testExplain(t *testing.T, s *harness.Server) {
	out := s.MustKubectl(t, "explain", "deployment.spec")
	for _, want := range []string{"DeploymentSpec", "replicas", "selector", "template", "strategy", "minReadySeconds"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain deployment.spec lacks %q:\n%s", want, out)
		}
	}
}

// manifests are the testdata files applied, and what `kubectl get -o name`
// calls the objects in them.
var manifests = []struct{ file, name string }{
	{"deployment.yaml", "deployment.apps/nginx"},
	{"replicaset.yaml", "replicaset.apps/frontend"},
	{"service.yaml", "service/my-service"},
	{"configmap.yaml", "configmap/game-config"},
	{"secret.yaml", "secret/db-credentials"},
}

func testApplyClientSide(t *testing.T, s *harness.Server) {
	const ns = "apply-csa"
	createNamespace(t, s, ns)
	for _, m := range manifests {
		out := s.MustKubectl(t, "apply", "-n", ns, "-f", filepath.Join("testdata", m.file))
		if !strings.Contains(out, m.name+" created") {
			t.Errorf("apply %s printed %q, want %q", m.file, out, m.name+" created")
		}
		// Applying the same file again changes nothing.
		out = s.MustKubectl(t, "apply", "-n", ns, "-f", filepath.Join("testdata", m.file))
		if !strings.Contains(out, m.name+" unchanged") {
			t.Errorf("second apply of %s printed %q, want %q", m.file, out, m.name+" unchanged")
		}
		ann := s.MustKubectl(t, "get", "-n", ns, m.name, "-o",
			`jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}`)
		if !strings.Contains(ann, `"kind"`) {
			t.Errorf("%s has no last-applied-configuration annotation after client-side apply: %q", m.name, ann)
		}
	}
	checkApplied(t, s, ns)
}

func testApplyServerSide(t *testing.T, s *harness.Server) {
	const ns = "apply-ssa"
	createNamespace(t, s, ns)
	for _, m := range manifests {
		out := s.MustKubectl(t, "apply", "--server-side", "-n", ns, "-f", filepath.Join("testdata", m.file))
		if !strings.Contains(out, m.name+" serverside-applied") {
			t.Errorf("server-side apply %s printed %q, want %q", m.file, out, m.name+" serverside-applied")
		}
		mf := s.MustKubectl(t, "get", "-n", ns, m.name, "--show-managed-fields", "-o",
			`jsonpath={range .metadata.managedFields[*]}{.manager}:{.operation}{"\n"}{end}`)
		if !slices.Contains(lines(mf), "kubectl:Apply") {
			t.Errorf("%s managed fields after server-side apply are %q, want kubectl:Apply", m.name, mf)
		}
	}
	checkApplied(t, s, ns)
	// A conflicting change by another manager is refused without --force-conflicts.
	in := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: game-config\ndata:\n  player_initial_lives: \"9\"\n"
	r := s.KubectlIn(t, in, "apply", "--server-side", "--field-manager", "other", "-n", ns, "-f", "-")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "conflict") {
		t.Errorf("server-side apply of a field owned by another manager: want a conflict, got\n%s", r)
	}
}

// checkApplied checks that every applied object can be read back with the
// content of its manifest.
func checkApplied(t *testing.T, s *harness.Server, ns string) {
	t.Helper()
	var names []string
	for _, m := range manifests {
		names = append(names, m.name)
	}
	out := s.MustKubectl(t, append([]string{"get", "-n", ns, "-o", "name"}, names...)...)
	if got := lines(out); !slices.Equal(got, names) {
		t.Errorf("kubectl get %v printed %v", names, got)
	}
	checks := []struct{ obj, jsonpath, want string }{
		{"deployment/nginx", "{.spec.replicas} {.spec.template.spec.containers[0].image}", "2 nginx:1.27"},
		{"rs/frontend", "{.spec.selector.matchLabels.tier} {.spec.replicas}", "frontend 3"},
		{"svc/my-service", "{.spec.ports[0].port} {.spec.selector.app}", "80 nginx"},
		{"cm/game-config", "{.data.player_initial_lives}", "3"},
		{"secret/db-credentials", "{.data.username}", "YWRtaW4="}, // base64("admin")
	}
	for _, c := range checks {
		if got := s.MustKubectl(t, "get", "-n", ns, c.obj, "-o", "jsonpath="+c.jsonpath); got != c.want {
			t.Errorf("kubectl get %s -o jsonpath=%s: %q, want %q", c.obj, c.jsonpath, got, c.want)
		}
	}
	if ip := s.MustKubectl(t, "get", "-n", ns, "svc/my-service", "-o", "jsonpath={.spec.clusterIP}"); !inServiceCIDR(ip) {
		t.Errorf("applied service has cluster IP %q, want one in %s", ip, serviceCIDR)
	}
}

func testLabelSelector(t *testing.T, s *harness.Server) {
	const ns = "labels"
	createNamespace(t, s, ns)
	s.MustKubectl(t, "create", "-n", ns, "-f", filepath.Join("testdata", "pods-labels.yaml"))
	out := s.MustKubectl(t, "get", "pods", "-n", ns, "-l", "environment in (production, qa)", "-o", "name")
	if got, want := lines(out), []string{"pod/web-production", "pod/web-qa"}; !slices.Equal(got, want) {
		t.Errorf("pods with environment in (production, qa): %v, want %v", got, want)
	}
	out = s.MustKubectl(t, "get", "pods", "-n", ns, "-l", "environment notin (production, qa)", "-o", "name")
	if got, want := lines(out), []string{"pod/web-dev"}; !slices.Equal(got, want) {
		t.Errorf("pods with environment notin (production, qa): %v, want %v", got, want)
	}
	out = s.MustKubectl(t, "get", "pods", "-n", ns, "-l", "environment=dev,tier=frontend", "-o", "name")
	if strings.TrimSpace(out) != "" {
		t.Errorf("pods with environment=dev,tier=frontend: %q, want none", out)
	}
}

func testFieldSelector(t *testing.T, s *harness.Server) {
	const ns = "fieldsel"
	createNamespace(t, s, ns)
	s.MustKubectl(t, "create", "configmap", "fs-in-default", "-n", "default", "--from-literal=a=b")
	s.MustKubectl(t, "create", "configmap", "fs-elsewhere", "-n", ns, "--from-literal=a=b")
	out := s.MustKubectl(t, "get", "cm", "-A", "--field-selector", "metadata.namespace!=default", "-o",
		`jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}`)
	got := lines(out)
	if !slices.Contains(got, ns+"/fs-elsewhere") {
		t.Errorf("field selector metadata.namespace!=default lost %s/fs-elsewhere: %v", ns, got)
	}
	for _, l := range got {
		if strings.HasPrefix(l, "default/") {
			t.Errorf("field selector metadata.namespace!=default returned %s", l)
		}
	}
	// The default namespace's config map is there for a plain list.
	all := lines(s.MustKubectl(t, "get", "cm", "-A", "-o",
		`jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}`))
	if !slices.Contains(all, "default/fs-in-default") {
		t.Errorf("kubectl get cm -A lacks default/fs-in-default: %v", all)
	}
}

func testKubectlWatch(t *testing.T, s *harness.Server) {
	const ns = "watch"
	s.MustKubectl(t, "create", "namespace", ns)
	s.MustKubectl(t, "create", "configmap", "before", "-n", ns)
	w := s.StartKubectl(t, "get", "configmaps", "-n", ns, "--watch", "-o", "name")
	// Once the initial list is printed the watch starts from its revision,
	// so everything created afterwards must show up.
	w.WaitLine(t, "configmap/before", time.Minute)
	s.MustKubectl(t, "create", "configmap", "after", "-n", ns, "--from-literal=k=v")
	w.WaitLine(t, "configmap/after", time.Minute)
}

func testRestart(t *testing.T, s *harness.Server) {
	kubeconfig, err := os.ReadFile(s.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	pki := readDir(t, filepath.Join(s.DataDir, "pki"))
	objects := snapshotObjects(t, s)
	if len(objects) < 5 { // a handful even when only some subtests ran
		t.Fatalf("only %d objects in the test namespaces before the restart: %v", len(objects), objects)
	}

	s.RestartAfterKill(t)

	if got, err := os.ReadFile(s.Kubeconfig()); err != nil || string(got) != string(kubeconfig) {
		t.Errorf("admin kubeconfig changed across the restart (err %v)", err)
	}
	after := readDir(t, filepath.Join(s.DataDir, "pki"))
	if len(after) != len(pki) {
		t.Errorf("pki files before the restart %d, after %d", len(pki), len(after))
	}
	for name, b := range pki {
		if string(after[name]) != string(b) {
			t.Errorf("pki/%s changed across the restart", name)
		}
	}
	// kubectl with the kubeconfig read before the restart still works, and
	// every object is back with its UID and resourceVersion.
	got := snapshotObjects(t, s)
	if !slices.Equal(got, objects) {
		t.Errorf("objects after kill -9 and restart differ:\n got %v\nwant %v", got, objects)
	}
	s.MustKubectl(t, "create", "configmap", "after-restart", "-n", "default")
	if out := s.MustKubectl(t, "get", "cm", "after-restart", "-n", "default", "-o", "name"); strings.TrimSpace(out) != "configmap/after-restart" {
		t.Errorf("object written after the restart reads back as %q", out)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	// A server stopped cleanly leaves no plugin directories in the temp dir.
	for _, dir := range []func(string) (string, error){host.SocketDir, host.ExecDir} {
		if d, err := dir(s.DataDir); err != nil {
			t.Error(err)
		} else if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("plugin directory %s left after SIGTERM: %v", d, err)
		}
	}
}

// snapshotObjects lists the objects in the test namespaces (and the
// namespaces) as "kind ns/name uid resourceVersion" lines. Kinds that
// controllers write to (status, scheduling) are listed by UID only, so the
// comparison holds once controllers run.
func snapshotObjects(t *testing.T, s *harness.Server) []string {
	t.Helper()
	const (
		withRV   = `jsonpath={range .items[*]}{.kind} {.metadata.namespace}/{.metadata.name} {.metadata.uid} {.metadata.resourceVersion}{"\n"}{end}`
		uidsOnly = `jsonpath={range .items[*]}{.kind} {.metadata.namespace}/{.metadata.name} {.metadata.uid}{"\n"}{end}`
	)
	out := lines(s.MustKubectl(t, append([]string{"get", "namespaces", "--ignore-not-found", "-o", withRV}, testNamespaces...)...))
	for _, ns := range testNamespaces {
		out = append(out, lines(s.MustKubectl(t, "get", "configmaps,secrets,services,serviceaccounts,podtemplates", "-n", ns, "-o", withRV))...)
		out = append(out, lines(s.MustKubectl(t, "get", "pods,deployments,replicasets", "-n", ns, "-o", uidsOnly))...)
	}
	return out
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// lines splits output into its non-empty lines.
func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ls = append(ls, l)
		}
	}
	return ls
}
