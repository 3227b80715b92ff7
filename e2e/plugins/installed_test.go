package plugins

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/core/plugininstall"
	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/e2e/harness"
)

// keelson runs the keelson CLI against server s's data dir.
func keelson(s *harness.Server, args ...string) (string, error) {
	out, err := exec.Command(s.Bin, append(args, "--data-dir", s.DataDir)...).CombinedOutput()
	return string(out), err
}

// installPlugin runs `keelson plugin install` on s until the API serves
// PluginInstall objects (the leader installs their definition as it starts
// its plugins).
func installPlugin(t *testing.T, s *harness.Server, args ...string) {
	t.Helper()
	var out string
	harness.Eventually(t, deadline, "keelson plugin install", func() (bool, string) {
		var err error
		out, err = keelson(s, append([]string{"plugin", "install"}, args...)...)
		if err != nil && !strings.Contains(out, "does not serve PluginInstall objects yet") {
			t.Fatalf("keelson plugin install %v: %v\n%s", args, err, out)
		}
		return err == nil, out
	})
	t.Logf("keelson plugin install: %s", strings.TrimSpace(out))
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// waitBlob waits until s's plugin store holds the executable sum.
func waitBlob(t *testing.T, s *harness.Server, sum string) {
	t.Helper()
	path := filepath.Join(s.DataDir, "plugin-store", sum)
	harness.Eventually(t, deadline, s.Name()+" to hold the plugin executable", func() (bool, string) {
		_, err := os.Stat(path)
		return err == nil, path
	})
	if got := fileSHA256(t, path); got != sum {
		t.Fatalf("%s holds %s with sha256 %s", s.Name(), path, got)
	}
}

// waitOnLeader waits until the installed plugin "everywhere" runs, ready,
// on the server that leads at that moment, in its term, and cond holds;
// leadership may move meanwhile (a loaded machine), so the leader is read
// again on every look.
func waitOnLeader(t *testing.T, c *harness.Cluster, dyn dynamic.Interface, cond func(pluginStatus) bool) (pluginStatus, *harness.Server) {
	t.Helper()
	var st pluginStatus
	var leader *harness.Server
	harness.Eventually(t, deadline, "the installed plugin to run on the leader", func() (bool, string) {
		var term uint64
		leader, term = c.Leader(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if st, err = readPlugin(ctx, dyn, "everywhere"); err != nil {
			return false, err.Error()
		}
		ok := st.Server == leader.Name() && st.Term == int64(term) && st.State == "running" && st.Ready && cond(st)
		return ok, fmt.Sprintf("leader %s term %d, plugin %+v", leader.Name(), term, st)
	})
	return st, leader
}

// A plugin installed once, on one server, runs on whichever server leads:
// after its leader dies, and on a server that joined after the install.
func TestInstalledPluginRunsOnEveryLeader(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.ServerOptions{})
	whole := t // the servers outlive the subtests
	leader, _ := c.Leader(t)
	var on *harness.Server // a follower: the install need not run on the leader
	for _, s := range c.Servers {
		if s != leader {
			on = s
		}
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(operatorRulesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := fileSHA256(t, operatorBin)
	installPlugin(t, on, operatorBin, "--name", "everywhere", "--rules", rules,
		"--config", `{"name":"cluster-info","data":{"region":"eu-1"}}`)

	dyn := dynamic.NewForConfigOrDie(on.RESTConfig(t))
	cs := on.Clientset(t)
	first, _ := waitOnLeader(t, c, dyn, func(pluginStatus) bool { return true })
	if cm := waitConfigMap(t, cs, "kube-system", "cluster-info"); cm.Data["region"] != "eu-1" {
		t.Errorf("the installed operator wrote %v, want region eu-1", cm.Data)
	}
	for _, s := range c.Servers {
		waitBlob(t, s, sum)
	}

	t.Run("a configuration change restarts the plugin, not the server", func(t *testing.T) {
		installPlugin(t, on, operatorBin, "--name", "everywhere", "--rules", rules,
			"--config", `{"name":"cluster-info","data":{"region":"eu-2"}}`)
		waitOnLeader(t, c, dyn, func(st pluginStatus) bool { return st.PID != first.PID })
		harness.Eventually(t, deadline, "the ConfigMap to carry the new configuration", func() (bool, string) {
			cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "cluster-info", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return cm.Data["region"] == "eu-2", cm.Data["region"]
		})
		for _, s := range c.Servers {
			if !s.Running() {
				t.Errorf("%s stopped", s.Name())
			}
		}
	})

	t.Run("the leader dies", func(t *testing.T) {
		old, _ := c.Leader(t)
		if old == on { // the test's clients and CLI use on: move leadership off it
			harness.Eventually(t, deadline, "leadership to leave "+on.Name(), func() (bool, string) {
				out, _ := keelson(on, "raft", "transfer-leader")
				old, _ = c.Leader(t)
				return old != on, out
			})
		}
		old.Kill()
		if _, now := waitOnLeader(t, c, dyn, func(pluginStatus) bool { return true }); now == old {
			t.Fatalf("%s was killed but leads", old.Name())
		}
	})

	t.Run("a server that joined after the install runs it when it leads", func(t *testing.T) {
		late := c.AddServer(whole)
		waitBlob(t, late, sum)
		harness.Eventually(t, deadline, late.Name()+" to become a voter and take leadership", func() (bool, string) {
			out, err := keelson(late, "raft", "transfer-leader", late.Name())
			return err == nil, out
		})
		if st, _ := waitOnLeader(t, c, dyn, func(st pluginStatus) bool { return st.Server == late.Name() }); st.Server != late.Name() {
			t.Fatalf("the plugin runs on %s, want %s", st.Server, late.Name())
		}
	})

	t.Run("node credentials can neither install a plugin nor read executables", func(t *testing.T) {
		checkNodeCannotInstall(t, on, sum)
		checkBlobNeedsPeerCertificate(t, on, sum)
	})

	t.Run("keelson plugin remove", func(t *testing.T) {
		if out, err := keelson(on, "plugin", "remove", "everywhere"); err != nil {
			t.Fatalf("keelson plugin remove: %v\n%s", err, out)
		}
		harness.Eventually(t, deadline, "the removed plugin's status and permissions to go", func() (bool, string) {
			_, err := dyn.Resource(pluginGVR).Get(context.Background(), "everywhere", metav1.GetOptions{})
			_, rerr := cs.RbacV1().ClusterRoles().Get(context.Background(), "keelson:plugin:everywhere", metav1.GetOptions{})
			return apierrors.IsNotFound(err) && apierrors.IsNotFound(rerr), ""
		})
		if out, err := keelson(on, "plugin", "remove", "everywhere"); err == nil || !strings.Contains(out, `no plugin "everywhere" is installed`) {
			t.Errorf("removing it again: %v\n%s", err, out)
		}
	})
}

// checkNodeCannotInstall: a node's API identity may not write PluginInstall
// objects (which would choose what code the leader runs, with what rights).
func checkNodeCannotInstall(t *testing.T, s *harness.Server, sum string) {
	t.Helper()
	cert := nodeCert(t, s)
	admin := s.RESTConfig(t)
	node := dynamic.NewForConfigOrDie(&rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: admin.CAData, CAFile: admin.CAFile, CertData: cert.CertPEM, KeyData: cert.KeyPEM,
	}})
	obj, err := plugininstall.Record{Name: "trojan", SHA256: sum, Preset: "read-only"}.Object()
	if err != nil {
		t.Fatal(err)
	}
	_, err = node.Resource(plugininstall.GVR).Create(context.Background(), obj, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("a node created a PluginInstall: %v, want 403", err)
	}
}

// checkBlobNeedsPeerCertificate: the executables travel over the raft
// port, which only servers' peer certificates open; a node's certificate
// from the same CA is refused, while the server's own fetches the blob.
func checkBlobNeedsPeerCertificate(t *testing.T, s *harness.Server, sum string) {
	t.Helper()
	cert := nodeCert(t, s)
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	nodeTLS := &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13} //nolint:gosec // the test checks the server refuses the client
	dir := filepath.Join(s.DataDir, "pki")
	peerTLS, err := (&pki.Bundle{CA: pki.Pair{CertFile: filepath.Join(dir, "ca.crt")},
		Peer: pki.Pair{CertFile: filepath.Join(dir, "peer.crt"), KeyFile: filepath.Join(dir, "peer.key")}}).PeerTLS()
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(cfg *tls.Config) error {
		store, err := pluginstore.New(t.TempDir(), pluginstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dial := func(ctx context.Context, a string) (net.Conn, error) { return raftnode.DialAdminTLS(ctx, a, cfg) }
		if err := ops.FetchPluginBlob(ctx, dial, s.RaftAddr(), store, sum); err != nil {
			return err
		}
		if !store.Has(sum) {
			t.Fatal("fetch succeeded but stored nothing")
		}
		return nil
	}
	if err := fetch(nodeTLS); err == nil {
		t.Error("a node's certificate fetched a plugin executable from the raft port")
	}
	if err := fetch(peerTLS); err != nil {
		t.Errorf("the server's peer certificate could not fetch the executable: %v", err)
	}
}

// nodeCert is a node identity (system:node:NAME in system:nodes) from the
// cluster CA, as an agent holds.
func nodeCert(t *testing.T, s *harness.Server) pki.ClientCert {
	t.Helper()
	dir := filepath.Join(s.DataDir, "pki")
	b := &pki.Bundle{CA: pki.Pair{CertFile: filepath.Join(dir, "ca.crt"), KeyFile: filepath.Join(dir, "ca.key")}}
	cert, err := b.IssueClient("system:node:worker-1", []string{"system:nodes"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// operatorRulesYAML is operatorRules as a --rules file.
const operatorRulesYAML = `- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update]
`
