package security

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// Snapshots are forced by a low threshold: a few dozen writes after the
// Secret make the server snapshot a state that holds it.
var secretsServerArgs = []string{"--raft-snapshot-threshold", "32", "--raft-snapshot-interval", "1s"}

// TestSecretsEncryptedAtRest stores a Secret with a known plaintext and
// searches every place the store reaches the disk for it: the raft log, a
// raft snapshot taken after the write, and a `keelson snapshot save` file.
// With encryption on (the default) none holds it; the control run with
// --disable-secrets-encryption finds it in each, so the search can fail.
func TestSecretsEncryptedAtRest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		wantClear bool
	}{
		{"default encrypts", nil, false},
		{"control: encryption disabled", []string{"--disable-secrets-encryption"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := harness.StartServer(t, harness.ServerOptions{Args: append(tc.args, secretsServerArgs...)})
			plaintext := []byte("keelson-e2e-plaintext-" + randomHex(t))
			rv := createSecretAndSnapshot(t, s, plaintext)

			saved := filepath.Join(t.TempDir(), "backup.snap")
			if out, err := exec.Command(s.Bin, "snapshot", "save", "--data-dir", s.DataDir, saved).CombinedOutput(); err != nil {
				t.Fatalf("keelson snapshot save: %v\n%s", err, out)
			}
			places := map[string][]string{
				"raft log":       raftLogFiles(t, s),
				"raft snapshot":  snapshotFilesAfter(t, s, rv),
				"saved snapshot": {saved},
			}
			for place, files := range places {
				found := ""
				for _, f := range files {
					if fileContains(t, f, plaintext) {
						found = f
					}
				}
				switch {
				case tc.wantClear && found == "":
					t.Errorf("%s: the plaintext is not in %v with encryption disabled: the search cannot see Secrets", place, files)
				case !tc.wantClear && found != "":
					t.Errorf("%s: %s holds the Secret's plaintext", place, found)
				}
			}
			if !tc.wantClear {
				checkStoredEncrypted(t, s, plaintext)
			}
		})
	}
}

// raftLogFiles are the files the raft log can be in: raft.db, and the WAL's
// segments (the default --raft-log-store).
func raftLogFiles(t *testing.T, s *harness.Server) []string {
	t.Helper()
	segments, err := filepath.Glob(filepath.Join(s.DataDir, "raft", "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return append(segments, filepath.Join(s.DataDir, "raft", "raft.db"))
}

// createSecretAndSnapshot creates the Secret, writes enough to pass the
// snapshot threshold, and returns the Secret's revision (its raft index).
func createSecretAndSnapshot(t *testing.T, s *harness.Server, plaintext []byte) uint64 {
	t.Helper()
	ctx := context.Background()
	cs := s.Clientset(t)
	sec, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "at-rest"},
		Data:       map[string][]byte{"password": plaintext},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv, err := strconv.ParseUint(sec.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", sec.ResourceVersion, err)
	}
	for i := range 48 {
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("filler-%d", i)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, 2*time.Minute, "a raft snapshot taken after the Secret was written", func() (bool, string) {
		files := snapshotFilesAfter(t, s, rv)
		return len(files) > 0, fmt.Sprintf("no snapshot past index %d yet", rv)
	})
	return rv
}

// snapshotFilesAfter lists the files of the raft snapshots whose index is
// at least index (directories are named TERM-INDEX-MILLIS).
func snapshotFilesAfter(t *testing.T, s *harness.Server, index uint64) []string {
	t.Helper()
	dir := filepath.Join(s.DataDir, "raft", "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if !e.IsDir() || len(parts) != 3 || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if idx, err := strconv.ParseUint(parts[1], 10, 64); err != nil || idx < index {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(dir, e.Name(), "*"))
		out = append(out, files...)
	}
	return out
}

func fileContains(t *testing.T, path string, needle []byte) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		// Removed since it was listed (snapshot retention, log
		// compaction): what is no longer on disk holds nothing at rest;
		// its successor is listed too.
		t.Logf("%s went before it was read", path)
		return false
	}
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return bytes.Contains(data, needle)
}

// checkStoredEncrypted reads the Secret's stored bytes through the etcd API
// (secretbox under the generated key1) and through the API (decrypted).
func checkStoredEncrypted(t *testing.T, s *harness.Server, plaintext []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.Etcd(t).Get(ctx, "/registry/secrets/default/at-rest")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading the stored Secret: %v", err)
	}
	if v := resp.Kvs[0].Value; !bytes.HasPrefix(v, []byte("k8s:enc:secretbox:v1:key1:")) {
		t.Errorf("the stored Secret starts %q, want the secretbox envelope", v[:min(len(v), 32)])
	}
	got, err := s.Clientset(t).CoreV1().Secrets("default").Get(ctx, "at-rest", metav1.GetOptions{})
	if err != nil || !bytes.Equal(got.Data["password"], plaintext) {
		t.Errorf("the Secret reads back %q, %v", got.Data["password"], err)
	}
	if st, err := os.Stat(filepath.Join(s.DataDir, "pki", "encryption-config.yaml")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the encryption key file: %v, %v (want mode 0600)", st, err)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestServerCertificatesRenewWhileRunning gives a server 30-second
// certificates and watches it renew them: fresh TLS handshakes on the API
// port, the raft (peer) port and the supervisor port see a later NotAfter,
// the admin kubeconfig works after the first certificates expired, and it
// is the same process throughout.
func TestServerCertificatesRenewWhileRunning(t *testing.T) {
	const lifetime = 30 * time.Second
	s := harness.StartServer(t, harness.ServerOptions{Args: []string{"--leaf-cert-lifetime", lifetime.String()}})
	peer, err := tls.LoadX509KeyPair(filepath.Join(s.DataDir, "pki", "peer.crt"), filepath.Join(s.DataDir, "pki", "peer.key"))
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{
		"API":        fmt.Sprintf("127.0.0.1:%d", s.APIPort),
		"raft":       raftAddr(t, s),
		"supervisor": fmt.Sprintf("127.0.0.1:%d", s.SupervisorPort()),
	}
	first := map[string]time.Time{}
	for name, addr := range ports {
		na, life := servedCert(t, addr, peer)
		if life > lifetime+5*time.Second {
			t.Fatalf("%s port serves a certificate valid for %s; --leaf-cert-lifetime %s was not applied", name, life, lifetime)
		}
		first[name] = na
	}
	for name, addr := range ports {
		harness.Eventually(t, 3*time.Minute, "the "+name+" port to serve a renewed certificate", func() (bool, string) {
			na, _ := servedCert(t, addr, peer)
			return na.After(first[name]), fmt.Sprintf("NotAfter %s, first %s", na, first[name])
		})
	}
	// Past the first certificates' expiry a new client, which verifies the
	// serving certificate and presents the kubeconfig's admin certificate,
	// still gets in.
	latest := first["API"]
	for _, na := range first {
		if na.After(latest) {
			latest = na
		}
	}
	time.Sleep(time.Until(latest.Add(2 * time.Second)))
	if _, err := s.Clientset(t).CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("the admin kubeconfig after the first certificates expired: %v", err)
	}
	// The harness never restarts a process by itself: still running is the
	// same process, and its first log is still the current one.
	if !s.Running() || !strings.HasSuffix(s.LogPath, "server-1.log") {
		t.Fatalf("the server stopped or restarted (running %v, log %s)", s.Running(), s.LogPath)
	}
	if !fileContains(t, s.LogPath, []byte("renewed certificates on the running server")) {
		t.Error("the server did not log its renewal")
	}
}

// servedCert completes a fresh TLS handshake with addr, presenting client
// (the raft port requires a server's peer certificate), and returns the
// served certificate's NotAfter and lifetime. Validity is read, not
// verified: a certificate that expired must be reported, not refused.
func servedCert(t *testing.T, addr string, client tls.Certificate) (time.Time, time.Duration) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // the test inspects the certificate itself
		Certificates:       []tls.Certificate{client},
	})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	c := conn.ConnectionState().PeerCertificates[0]
	return c.NotAfter, c.NotAfter.Sub(c.NotBefore)
}

var raftAddrRE = regexp.MustCompile(`msg="store ready".* raft_address=([0-9.:]+)`)

// raftAddr is the raft address the server logged when its store was ready.
func raftAddr(t *testing.T, s *harness.Server) string {
	t.Helper()
	data, err := os.ReadFile(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	m := raftAddrRE.FindSubmatch(data)
	if m == nil {
		t.Fatalf("no raft_address in the store-ready line of %s", s.LogPath)
	}
	return string(m[1])
}

// TestClusterSharesSecretsKeyAndRenews runs three servers with 30-second
// certificates: the joining servers received the first one's encryption
// configuration, so a Secret written through one reads back through the
// others, and after every server's first certificates expired, writes
// through each server (a follower forwards to the leader over the peer
// port) and reads of every Secret still work.
func TestClusterSharesSecretsKeyAndRenews(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.ServerOptions{Args: []string{"--leaf-cert-lifetime", "30s"}})
	want, err := os.ReadFile(filepath.Join(c.Servers[0].DataDir, "pki", "encryption-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers[1:] {
		got, err := os.ReadFile(filepath.Join(s.DataDir, "pki", "encryption-config.yaml"))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s's encryption configuration differs from %s's (err %v)", s.Name(), c.Servers[0].Name(), err)
		}
	}
	ctx := context.Background()
	start := time.Now()
	writeAndReadEverywhere := func(round string) {
		for _, w := range c.Servers {
			name := fmt.Sprintf("%s-via-%s", round, w.Name())
			plaintext := []byte("cluster-" + randomHex(t))
			_, err := w.Clientset(t).CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Data:       map[string][]byte{"v": plaintext},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("creating Secret %s through %s: %v", name, w.Name(), err)
			}
			for _, r := range c.Servers {
				harness.Eventually(t, time.Minute, "Secret "+name+" through "+r.Name(), func() (bool, string) {
					got, err := r.Clientset(t).CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
					if err != nil {
						return false, err.Error()
					}
					return bytes.Equal(got.Data["v"], plaintext), fmt.Sprintf("data %q", got.Data["v"])
				})
			}
		}
	}
	writeAndReadEverywhere("first")
	// Every server's first certificates expire 30 s after it started.
	time.Sleep(time.Until(start.Add(40 * time.Second)))
	writeAndReadEverywhere("after-expiry")
	for _, s := range c.Servers {
		if !s.Running() {
			t.Fatalf("%s stopped", s.Name())
		}
		if !fileContains(t, s.LogPath, []byte("renewed certificates on the running server")) {
			t.Errorf("%s did not renew its certificates", s.Name())
		}
	}
}

// TestSecretsEncryptionTurnedOnLater is an existing cluster that stored
// Secrets in clear and turns encryption on: after the restart the old
// Secret still reads (identity is the read fallback), new ones are stored
// encrypted, and the README's rewrite step encrypts the old one.
func TestSecretsEncryptionTurnedOnLater(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "server.yaml")
	writeCfg := func(disable bool) {
		data := fmt.Sprintf("apiServer:\n  disableSecretsEncryption: %v\n", disable)
		if err := os.WriteFile(cfgFile, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(true)
	s := harness.StartServer(t, harness.ServerOptions{Args: []string{"--config", cfgFile}})
	ctx := context.Background()
	plaintext := []byte("before-encryption-" + randomHex(t))
	if _, err := s.Clientset(t).CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "old"},
		Data:       map[string][]byte{"v": plaintext},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stored := func(name string) []byte {
		resp, err := s.Etcd(t).Get(ctx, "/registry/secrets/default/"+name)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("reading stored Secret %s: %v", name, err)
		}
		return resp.Kvs[0].Value
	}
	if !bytes.Contains(stored("old"), plaintext) {
		t.Fatal("with encryption disabled the Secret is not stored in clear")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	writeCfg(false)
	s.Start(t)
	cs := s.Clientset(t)
	old, err := cs.CoreV1().Secrets("default").Get(ctx, "old", metav1.GetOptions{})
	if err != nil || !bytes.Equal(old.Data["v"], plaintext) {
		t.Fatalf("the Secret stored in clear reads back %q, %v", old.Data["v"], err)
	}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "new"},
		Data:       map[string][]byte{"v": plaintext},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := stored("new"); !bytes.HasPrefix(v, []byte("k8s:enc:secretbox:v1:key1:")) {
		t.Fatalf("a new Secret is stored as %q", v[:min(len(v), 32)])
	}
	// The README's step: keelson kubectl get secrets -A -o json | keelson kubectl replace -f -
	get := exec.Command(s.Bin, "kubectl", "--kubeconfig", s.Kubeconfig(), "get", "secrets", "-A", "-o", "json")
	list, err := get.Output()
	if err != nil {
		t.Fatalf("kubectl get secrets: %v", err)
	}
	replace := exec.Command(s.Bin, "kubectl", "--kubeconfig", s.Kubeconfig(), "replace", "-f", "-")
	replace.Stdin = bytes.NewReader(list)
	if out, err := replace.CombinedOutput(); err != nil {
		t.Fatalf("kubectl replace: %v\n%s", err, out)
	}
	if v := stored("old"); !bytes.HasPrefix(v, []byte("k8s:enc:secretbox:v1:key1:")) || bytes.Contains(v, plaintext) {
		t.Fatalf("after the rewrite the old Secret is stored as %q", v[:min(len(v), 32)])
	}
}

// TestCAExpiryWarned: a CA cannot be renewed, so a server whose CA expires
// within 30 days says so in its log and `keelson certificate check` reports
// it (exit status 1); a fresh cluster's check is clean.
func TestCAExpiryWarned(t *testing.T) {
	check := func(s *harness.Server) (string, error) {
		out, err := exec.Command(s.Bin, "certificate", "check", "--data-dir", s.DataDir).CombinedOutput()
		return string(out), err
	}
	fresh := harness.StartServer(t, harness.ServerOptions{DisableAPIServer: true})
	if out, err := check(fresh); err != nil || strings.Contains(out, "WARNING") {
		t.Fatalf("a fresh cluster's certificate check: %v\n%s", err, out)
	}
	fresh.Kill()

	s := harness.StartServer(t, harness.ServerOptions{DisableAPIServer: true, Args: []string{"--ca-cert-lifetime", "480h"}})
	out, err := check(s)
	if err == nil || !strings.Contains(out, "WARNING: expires in") || !strings.Contains(out, "rotate the CA") {
		t.Fatalf("certificate check with a CA expiring in 20 days: %v\n%s", err, out)
	}
	if !fileContains(t, s.LogPath, []byte(`msg="certificate needs attention: expires in`)) {
		t.Fatal("the server did not log the CA's coming expiry")
	}
}
