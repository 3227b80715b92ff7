// Package plugins tests the plugin host end to end: real keelson servers
// running third-party plugin executables from their plugin directory.
package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/e2e/harness"
)

// Built once in TestMain: the example operator and the SDK test plugin.
var (
	operatorBin string
	testPlugin  string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keelson-e2e-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	operatorBin = filepath.Join(dir, "configmap-everywhere")
	testPlugin = filepath.Join(dir, "testplugin")
	for pkg, out := range map[string]string{
		"github.com/keelson/keelson/examples/plugins/configmap-everywhere": operatorBin,
		"github.com/keelson/keelson/plugins/internal/testplugin":           testPlugin,
	} {
		build := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// deadline bounds every wait; it is a hang guard, not a timing claim.
const deadline = 2 * time.Minute

// pluginDir fills a plugin directory with copies of the given binaries and
// returns it with their checksums, by file name.
func pluginDir(t *testing.T, files map[string]string) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	sums := map[string]string{}
	for name, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		sums[name] = hex.EncodeToString(sum[:])
	}
	return dir, sums
}

// pluginStatus is the status of a Plugin object.
type pluginStatus struct {
	State, LastError, Server, Message string
	Ready                             bool
	Restarts, PID, Term               int64
}

func readPlugin(ctx context.Context, dyn dynamic.Interface, name string) (pluginStatus, error) {
	obj, err := dyn.Resource(pluginGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return pluginStatus{}, err
	}
	str := func(f string) string { v, _, _ := unstructured.NestedString(obj.Object, "status", f); return v }
	num := func(f string) int64 { v, _, _ := unstructured.NestedInt64(obj.Object, "status", f); return v }
	ready, _, _ := unstructured.NestedBool(obj.Object, "status", "ready")
	return pluginStatus{State: str("state"), LastError: str("lastError"), Server: str("server"), Message: str("message"),
		Ready: ready, Restarts: num("restarts"), PID: num("pid"), Term: num("term")}, nil
}

// waitPlugin polls the Plugin object until cond holds.
func waitPlugin(t *testing.T, dyn dynamic.Interface, name string, cond func(pluginStatus) bool) pluginStatus {
	t.Helper()
	var last pluginStatus
	var lastErr error
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last, lastErr = readPlugin(ctx, dyn, name)
		cancel()
		if lastErr == nil && cond(last) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("plugin %s never reached the expected state; last %+v, err %v", name, last, lastErr)
	return last
}

func waitConfigMap(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.ConfigMap {
	t.Helper()
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			return cm
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ConfigMap %s/%s never appeared", ns, name)
	return nil
}

// pluginClient is a client with a plugin identity of the given term,
// issued by the cluster CA in dataDir, as the plugin host would issue it
// (with noTerm, an identity without a term group).
func pluginClient(t *testing.T, s *harness.Server, plugin string, term uint64, noTerm bool) kubernetes.Interface {
	t.Helper()
	dir := filepath.Join(s.DataDir, "pki")
	b := &pki.Bundle{CA: pki.Pair{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}}
	groups := []string{pki.PluginsGroup, pki.TermGroup(term)}
	if noTerm {
		groups = groups[:1]
	}
	cert, err := b.IssueClient(pki.PluginUser(plugin), groups, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin := s.RESTConfig(t)
	cfg := &rest.Config{Host: admin.Host, Timeout: time.Minute, TLSClientConfig: rest.TLSClientConfig{
		CAData: admin.CAData, CAFile: admin.CAFile, CertData: cert.CertPEM, KeyData: cert.KeyPEM,
	}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func createConfigMap(cs kubernetes.Interface, ns, name string) error {
	_, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// checkFence shows the term fence: the plugin's identity with the current
// term may write, one term older may not, and neither may one without a term.
func checkFence(t *testing.T, s *harness.Server, term uint64) {
	t.Helper()
	if err := createConfigMap(pluginClient(t, s, "configmap-everywhere", term, false), "default", fmt.Sprintf("fence-ok-%d", term)); err != nil {
		t.Errorf("a write with the current term %d was refused: %v", term, err)
	}
	err := createConfigMap(pluginClient(t, s, "configmap-everywhere", term-1, false), "default", fmt.Sprintf("fence-stale-%d", term))
	want := fmt.Sprintf("was started by the leader of raft term %d, but the cluster is in term %d", term-1, term)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("a write with stale term %d: got %v, want 403 saying %q", term-1, err, want)
	}
	err = createConfigMap(pluginClient(t, s, "configmap-everywhere", 0, true), "default", "fence-noterm")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "carries no raft term") {
		t.Errorf("a write without a term: got %v, want 403 saying it carries no raft term", err)
	}
	// A term newer than the server knows passes admission (its server may
	// lag behind the leader), so the store's own fence decides: the write
	// is proposed in the current term, not the one it carries, and no
	// server commits it. This shows the term reaching the store.
	future := fmt.Sprintf("fence-future-%d", term)
	err = createConfigMap(pluginClient(t, s, "configmap-everywhere", term+1000, false), "default", future)
	if err == nil || !strings.Contains(err.Error(), "write fenced") {
		t.Errorf("a write with future term %d: got %v, want the store's refusal (write fenced)", term+1000, err)
	}
	admin, aerr := kubernetes.NewForConfig(s.RESTConfig(t))
	if aerr != nil {
		t.Fatal(aerr)
	}
	if _, err := admin.CoreV1().ConfigMaps("default").Get(context.Background(), future, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the fenced write left ConfigMap %s: get says %v, want NotFound", future, err)
	}
}

// processGone reports whether pid no longer runs (or is a zombie).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] == "Z"
}

func TestPluginHost(t *testing.T) {
	dir, sums := pluginDir(t, map[string]string{
		"configmap-everywhere": operatorBin, "crashy": testPlugin, "tampered": testPlugin,
	})
	s := harness.StartServer(t, harness.ServerOptions{Args: []string{
		"--plugin-dir", dir,
		"--config", externalPlugins(t,
			"{name: configmap-everywhere, sha256: \""+sums["configmap-everywhere"]+"\", rules: "+operatorRules+"}",
			// The operator, approved to read only: refused, as it also
			// declares writes to ConfigMaps.
			"{name: greedy, file: configmap-everywhere, sha256: \""+sums["configmap-everywhere"]+"\", preset: read-only}",
			"{name: crashy, sha256: \""+sums["crashy"]+"\", preset: read-only}",
			"{name: tampered, sha256: \""+strings.Repeat("0", 64)+"\", preset: read-only}"),
		"--plugin-config", `crashy={"mode":"crash","after":"300ms"}`,
		"--plugin-config", `configmap-everywhere={"name":"cluster-info","data":{"region":"eu-1"}}`,
	}})
	dyn := dynamic.NewForConfigOrDie(s.RESTConfig(t))
	cs := s.Clientset(t)

	op := waitPlugin(t, dyn, "configmap-everywhere", func(st pluginStatus) bool { return st.State == "running" && st.Ready })
	if op.Server != "e2e-0" || op.PID == 0 || op.Term == 0 {
		t.Errorf("running plugin status %+v lacks its server, pid or term", op)
	}
	crashy := waitPlugin(t, dyn, "crashy", func(st pluginStatus) bool { return st.State == "crash-looping" && st.Restarts >= 2 })
	if !strings.Contains(crashy.LastError, "testplugin crashed on purpose") {
		t.Errorf("crash-looping plugin's last error %q does not carry its error", crashy.LastError)
	}
	tampered := waitPlugin(t, dyn, "tampered", func(st pluginStatus) bool { return st.State == "refused" })
	for _, want := range []string{"its sha256 is " + sums["tampered"], "the configuration expects " + strings.Repeat("0", 64)} {
		if !strings.Contains(tampered.LastError, want) {
			t.Errorf("refusal %q does not say %q", tampered.LastError, want)
		}
	}
	if tampered.PID != 0 || tampered.Restarts != 0 {
		t.Errorf("a refused plugin ran: %+v", tampered)
	}
	greedy := waitPlugin(t, dyn, "greedy", func(st pluginStatus) bool { return st.State == "refused" })
	for _, want := range []string{"declares API permissions beyond what plugins.external approves", "configmaps verbs=[create]"} {
		if !strings.Contains(greedy.LastError, want) {
			t.Errorf("refusal %q does not say %q", greedy.LastError, want)
		}
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(context.Background(), "keelson:plugin:greedy", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused plugin's ClusterRole: %v, want none granted", err)
	}
	if os.Geteuid() == 0 {
		if uid := procUID(t, op.PID); uid != "65534" {
			t.Errorf("third-party plugin runs as uid %s, want 65534 (nobody)", uid)
		}
	}

	t.Run("keelson plugins", func(t *testing.T) {
		// crashy moves between crash-looping and starting as it is
		// restarted, so the listing is read until it is seen waiting.
		var out []byte
		var missing []string
		for end := time.Now().Add(deadline); ; time.Sleep(200 * time.Millisecond) {
			var err error
			out, err = exec.Command(s.Bin, "plugins", "--kubeconfig", s.Kubeconfig()).CombinedOutput()
			if err != nil {
				t.Fatalf("keelson plugins: %v\n%s", err, out)
			}
			missing = missing[:0]
			for _, want := range []string{"LAST-ERROR", "configmap-everywhere", "running", "crash-looping", "refused", "crashed on purpose"} {
				if !strings.Contains(string(out), want) {
					missing = append(missing, want)
				}
			}
			if len(missing) == 0 || time.Now().After(end) {
				break
			}
		}
		if len(missing) > 0 {
			t.Errorf("keelson plugins does not show %q:\n%s", missing, out)
		}
	})

	t.Run("the operator keeps a ConfigMap in every namespace", func(t *testing.T) {
		for _, ns := range []string{"default", "kube-system"} {
			if cm := waitConfigMap(t, cs, ns, "cluster-info"); cm.Data["region"] != "eu-1" {
				t.Errorf("%s/cluster-info data %v", ns, cm.Data)
			}
		}
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cm := waitConfigMap(t, cs, "team-a", "cluster-info")
		if err := cs.CoreV1().ConfigMaps("team-a").Delete(context.Background(), "cluster-info", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		end := time.Now().Add(deadline)
		for {
			again, err := cs.CoreV1().ConfigMaps("team-a").Get(context.Background(), "cluster-info", metav1.GetOptions{})
			if err == nil && again.UID != cm.UID {
				break
			}
			if time.Now().After(end) {
				t.Fatal("deleted ConfigMap was not recreated")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		own := pluginClient(t, s, "configmap-everywhere", uint64(op.Term), false)
		_, err := own.CoreV1().Secrets("default").List(context.Background(), metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("the operator's identity listed secrets, which it never declared: %v", err)
		}
	})

	t.Run("term fence", func(t *testing.T) { checkFence(t, s, uint64(op.Term)) })

	t.Run("kill -9 of the server leaves no plugin process", func(t *testing.T) {
		op := waitPlugin(t, dyn, "configmap-everywhere", func(st pluginStatus) bool { return st.State == "running" && st.PID != 0 })
		s.Kill()
		end := time.Now().Add(deadline)
		for !processGone(int(op.PID)) {
			if time.Now().After(end) {
				_ = syscall.Kill(int(op.PID), syscall.SIGKILL)
				t.Fatalf("plugin pid %d outlived its SIGKILLed server", op.PID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestPluginsFollowTheLeader(t *testing.T) {
	dir, sums := pluginDir(t, map[string]string{"configmap-everywhere": operatorBin, "steady": testPlugin})
	c := harness.StartCluster(t, 3, harness.ServerOptions{Args: []string{
		"--plugin-dir", dir,
		"--config", externalPlugins(t,
			"{name: configmap-everywhere, sha256: \""+sums["configmap-everywhere"]+"\", rules: "+operatorRules+"}",
			"{name: steady, sha256: \""+sums["steady"]+"\", preset: read-only}"),
		"--plugin-config", `steady={"mode":"healthy"}`,
	}})
	names := []string{"configmap-everywhere", "steady"}
	leader, _ := waitPluginsOnLeader(t, c, dynamic.NewForConfigOrDie(c.Servers[0].RESTConfig(t)), names...)
	var follower *harness.Server
	for _, s := range c.Servers {
		if s != leader {
			follower = s
		}
	}
	dyn := dynamic.NewForConfigOrDie(follower.RESTConfig(t))
	waitPluginMetrics(t, leader, "configmap-everywhere")

	killed := time.Now()
	leader.Kill()
	newLeader, newTerm := waitPluginsOnLeader(t, c, dyn, names...)
	moved := time.Since(killed).Round(10 * time.Millisecond)
	t.Logf("leader %s killed; every plugin running and ready on the new leader %s (term %d) after %s",
		leader.Name(), newLeader.Name(), newTerm, moved)
	// A scraper of every server finds the plugins' metrics on whichever leads.
	waitPluginMetrics(t, newLeader, "configmap-everywhere")

	cs := follower.Clientset(t)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "after-failover"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitConfigMap(t, cs, "after-failover", "cluster-info")
	checkFence(t, follower, newTerm)
}

// waitPluginsOnLeader waits until every named plugin runs, ready, on the
// server that leads, in its term, and returns that leader and term. The
// leader is read again on every poll: on a loaded machine another election
// may follow the one the test saw first.
func waitPluginsOnLeader(t *testing.T, c *harness.Cluster, dyn dynamic.Interface, names ...string) (*harness.Server, uint64) {
	t.Helper()
	var last string
	for end := time.Now().Add(deadline); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		leader, term := c.Leader(t)
		last = ""
		for _, name := range names {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			st, err := readPlugin(ctx, dyn, name)
			cancel()
			if err != nil || st.Server != leader.Name() || st.State != "running" || !st.Ready || st.Term != int64(term) {
				last = fmt.Sprintf("%s: %+v, err %v (leader %s, term %d)", name, st, err, leader.Name(), term)
				break
			}
		}
		if last == "" {
			return leader, term
		}
	}
	t.Fatalf("plugins %v never all ran, ready, on the leader in its term; last %s", names, last)
	return nil, 0
}

// waitPluginMetrics waits until s's /metrics carries the plugin's own
// metrics, relayed by the plugin host of the server that leads.
func waitPluginMetrics(t *testing.T, s *harness.Server, plugin string) {
	t.Helper()
	want := fmt.Sprintf(`keelson_plugin_go_goroutines{plugin=%q}`, plugin)
	client := s.Clientset(t)
	harness.Eventually(t, time.Minute, want+" on "+s.Name()+"'s /metrics", func() (bool, string) {
		body, err := client.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(body), want), "absent"
	})
}

// operatorRules approves what examples/plugins/configmap-everywhere declares.
const operatorRules = `[{apiGroups: [""], resources: [namespaces], verbs: [get, list, watch]}, ` +
	`{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch, create, update]}]`

// externalPlugins writes a server configuration file listing the given
// plugins.external entries (YAML flow mappings) and returns its path.
func externalPlugins(t *testing.T, entries ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.yaml")
	body := "plugins:\n  external:\n"
	for _, e := range entries {
		body += "  - " + e + "\n"
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// procUID is the real uid of pid, from /proc.
func procUID(t *testing.T, pid int64) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(v)[0]
		}
	}
	return ""
}
