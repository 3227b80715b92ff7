package apiserver

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	psaapi "k8s.io/pod-security-admission/admission/api"
	psaload "k8s.io/pod-security-admission/admission/api/load"
	"sigs.k8s.io/yaml"
)

// loadPodSecurity reads the file Run writes the way kube-apiserver's
// PodSecurity plugin reads its section of it.
func loadPodSecurity(t *testing.T, c Config) *psaapi.PodSecurityConfiguration {
	t.Helper()
	if err := c.WriteAdmissionConfig(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(admissionConfigPath(c.DataDir))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Kind    string `json:"kind"`
		Plugins []struct {
			Name          string          `json:"name"`
			Configuration json.RawMessage `json:"configuration"`
		} `json:"plugins"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kind != "AdmissionConfiguration" || len(doc.Plugins) != 1 || doc.Plugins[0].Name != "PodSecurity" {
		t.Fatalf("admission configuration:\n%s", b)
	}
	cfg, err := psaload.LoadFromData(doc.Plugins[0].Configuration)
	if err != nil {
		t.Fatalf("PodSecurity refuses its configuration: %v\n%s", err, b)
	}
	return cfg
}

func TestPodSecurityDefaultEnforcesBaseline(t *testing.T) {
	c := Config{DataDir: t.TempDir(), EtcdServers: []string{"unix:///x"}, Bundle: testBundle()}.withDefaults()
	cfg := loadPodSecurity(t, c)
	d := cfg.Defaults
	if d.Enforce != "baseline" || d.Warn != "restricted" || d.Audit != "restricted" {
		t.Errorf("defaults: %+v", d)
	}
	if !slices.Equal(cfg.Exemptions.Namespaces, []string{"kube-system"}) {
		t.Errorf("exempt namespaces: %v", cfg.Exemptions.Namespaces)
	}
	if !slices.Contains(c.args(), "--admission-control-config-file="+admissionConfigPath(c.DataDir)) {
		t.Errorf("args do not point at the admission configuration: %v", c.args())
	}
}

func TestPodSecurityConfigured(t *testing.T) {
	c := Config{DataDir: t.TempDir(), EtcdServers: []string{"unix:///x"}, Bundle: testBundle(),
		PodSecurity: PodSecurity{Enforce: "restricted", ExemptNamespaces: []string{}}}.withDefaults()
	cfg := loadPodSecurity(t, c)
	if cfg.Defaults.Enforce != "restricted" || cfg.Defaults.Warn != "restricted" || len(cfg.Exemptions.Namespaces) != 0 {
		t.Errorf("configuration: %+v", cfg)
	}
}

func TestPodSecurityInvalidLevelNamed(t *testing.T) {
	c := Config{DataDir: "/d", EtcdServers: []string{"unix:///x"}, Bundle: testBundle(), PodSecurity: PodSecurity{Warn: "strict"}}.withDefaults()
	err := c.validate()
	if err == nil || !strings.Contains(err.Error(), `PodSecurity.Warn "strict"`) {
		t.Fatalf("validate: %v", err)
	}
}

func TestOperatorAdmissionConfigWins(t *testing.T) {
	c := Config{DataDir: "/d", EtcdServers: []string{"unix:///x"}, Bundle: testBundle(),
		ExtraArgs: map[string]string{"admission-control-config-file": "/etc/mine.yaml"}}.withDefaults()
	if c.ownsAdmissionConfig() {
		t.Error("keelson would overwrite nothing but still claims the admission configuration")
	}
	if !slices.Contains(c.args(), "--admission-control-config-file=/etc/mine.yaml") {
		t.Errorf("args: %v", c.args())
	}
}
