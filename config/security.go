package config

import "fmt"

// PodSecurity is the Pod Security admission default of the cluster: the
// level a namespace is held to unless its pod-security.kubernetes.io labels
// say otherwise (https://kubernetes.io/docs/concepts/security/pod-security-admission/).
type PodSecurity struct {
	// Enforce refuses pods that break this level: privileged, baseline or
	// restricted.
	Enforce string `json:"enforce"`
	// Warn returns a warning to the client for pods that break this level.
	Warn string `json:"warn"`
	// Audit annotates audit events of pods that break this level.
	Audit string `json:"audit"`
	// ExemptNamespaces are never checked.
	ExemptNamespaces []string `json:"exemptNamespaces"`
}

// DefaultPodSecurity enforces baseline (no privileged containers, host
// namespaces, hostPath volumes or added capabilities), warns and audits
// restricted, and exempts kube-system.
func DefaultPodSecurity() PodSecurity {
	return PodSecurity{Enforce: "baseline", Warn: "restricted", Audit: "restricted", ExemptNamespaces: []string{"kube-system"}}
}

func (p *PodSecurity) validate() []error {
	var errs []error
	for _, l := range []struct{ key, flag, v string }{
		{"enforce", "pod-security-enforce", p.Enforce},
		{"warn", "pod-security-warn", p.Warn},
		{"audit", "pod-security-audit", p.Audit},
	} {
		switch l.v {
		case "privileged", "baseline", "restricted":
		default:
			errs = append(errs, fmt.Errorf("apiServer.podSecurity.%s (--%s): %q is not a level; use privileged, baseline or restricted", l.key, l.flag, l.v))
		}
	}
	for i, ns := range p.ExemptNamespaces {
		if err := validDNSLabelish(ns); err != nil || len(ns) > 63 {
			errs = append(errs, fmt.Errorf("apiServer.podSecurity.exemptNamespaces (--pod-security-exempt-namespace): entry %d %q is not a namespace name", i, ns))
		}
	}
	return errs
}
