package apiserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// PodSecurity is the cluster-wide default of the PodSecurity admission
// plugin: the level a namespace without pod-security.kubernetes.io labels
// is held to, and the namespaces it never checks.
type PodSecurity struct {
	// Enforce, Warn and Audit are levels: privileged, baseline or
	// restricted. Empty: baseline enforced, restricted warned and audited.
	Enforce, Warn, Audit string
	// ExemptNamespaces are never checked; nil: kube-system.
	ExemptNamespaces []string
}

// DefaultPodSecurity: baseline enforced (no privileged, host namespaces,
// hostPath or added capabilities), restricted warned and audited,
// kube-system exempt.
func DefaultPodSecurity() PodSecurity {
	return PodSecurity{Enforce: "baseline", Warn: "restricted", Audit: "restricted", ExemptNamespaces: []string{"kube-system"}}
}

// admissionConfig is kube-apiserver's AdmissionConfiguration carrying p as
// the PodSecurity plugin's configuration.
func (p PodSecurity) admissionConfig() ([]byte, error) {
	exempt := p.ExemptNamespaces
	if exempt == nil {
		exempt = []string{}
	}
	doc := map[string]any{
		"apiVersion": "apiserver.config.k8s.io/v1",
		"kind":       "AdmissionConfiguration",
		"plugins": []any{map[string]any{
			"name": "PodSecurity",
			"configuration": map[string]any{
				"apiVersion": "pod-security.admission.config.k8s.io/v1",
				"kind":       "PodSecurityConfiguration",
				"defaults": map[string]string{
					"enforce": p.Enforce, "enforce-version": "latest",
					"warn": p.Warn, "warn-version": "latest",
					"audit": p.Audit, "audit-version": "latest",
				},
				"exemptions": map[string]any{"usernames": []string{}, "runtimeClasses": []string{}, "namespaces": exempt},
			},
		}},
	}
	return yaml.Marshal(doc)
}

// validate names the level that is not one.
func (p PodSecurity) validate() error {
	for _, l := range []struct{ field, v string }{{"Enforce", p.Enforce}, {"Warn", p.Warn}, {"Audit", p.Audit}} {
		switch l.v {
		case "privileged", "baseline", "restricted":
		default:
			return fmt.Errorf("PodSecurity.%s %q is not privileged, baseline or restricted", l.field, l.v)
		}
	}
	return nil
}

// WriteAdmissionConfig writes the admission configuration file under
// DataDir/apiserver, where the flag from args points.
func (c Config) WriteAdmissionConfig() error {
	b, err := c.PodSecurity.admissionConfig()
	if err != nil {
		return fmt.Errorf("apiserver: admission configuration: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(c.DataDir, "apiserver"), 0o700); err != nil {
		return fmt.Errorf("apiserver: %w", err)
	}
	path := admissionConfigPath(c.DataDir)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("apiserver: writing %s: %w", path, err)
	}
	return nil
}

func admissionConfigPath(dataDir string) string {
	return filepath.Join(dataDir, "apiserver", "admission-config.yaml")
}

// ownsAdmissionConfig reports whether keelson writes the admission
// configuration: not when ExtraArgs bring one of the operator's.
func (c Config) ownsAdmissionConfig() bool {
	for k := range c.ExtraArgs {
		if strings.TrimLeft(k, "-") == "admission-control-config-file" {
			return false
		}
	}
	return true
}
