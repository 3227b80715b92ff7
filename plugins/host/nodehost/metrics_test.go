package nodehost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/fake"

	"github.com/keelson/keelson/plugins/host"
)

// TestNodePluginMetricsRelayed runs a real SDK-built plugin as a node
// plugin and scrapes the registry the agent serves: the plugin's own
// metrics appear renamed keelson_plugin_* and labelled with the plugin,
// and go once the node's plugin set is stopped.
func TestNodePluginMetricsRelayed(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "testplugin")
	build := exec.Command("go", "build", "-o", bin, "github.com/keelson/keelson/plugins/internal/testplugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building the test plugin: %v", err)
	}
	socks, err := host.PrepareSocketDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	r := &runner{
		cfg: Config{NodeName: "n1", APIEndpoint: "https://127.0.0.1:6443", Logger: log, SocketDir: socks,
			NodeCredentials: nodeCert(t)},
		status: newStatusWriter(fake.NewSimpleDynamicClient(runtime.NewScheme()), "n1", log),
	}
	defer r.stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(host.NewMetricsCollector(r.metrics, log))

	r.apply(context.Background(), selection{specs: []host.Spec{{Name: "edge", Path: bin, Builtin: true}}})
	deadline := time.Now().Add(60 * time.Second) // a hang guard, not a timing claim
	for !hasSeries(t, reg, "keelson_plugin_go_goroutines", "edge") {
		if time.Now().After(deadline) {
			t.Fatal("the node plugin's go_goroutines never appeared as keelson_plugin_go_goroutines{plugin=\"edge\"}")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	if hasSeries(t, reg, "keelson_plugin_go_goroutines", "edge") {
		t.Error("metrics of a stopped node plugin are still served")
	}
}

func hasSeries(t *testing.T, reg *prometheus.Registry, family, plugin string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == host.MetricLabel && lp.GetValue() == plugin {
					return true
				}
			}
		}
	}
	return false
}

// nodeCert is a self-signed client certificate standing for the node's.
func nodeCert(t *testing.T) func() ([]byte, []byte, error) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "system:node:n1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return func() ([]byte, []byte, error) { return certPEM, keyPEM, nil }
}
