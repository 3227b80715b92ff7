package config

import (
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// A third-party plugin declares the API permissions it wants; it gets them
// only within what the operator approved for it in plugins.external[i]:
// explicit rules, a preset, or both. Presets are fixed lists of rules that
// never include the escalate, bind or impersonate verbs, nor any wildcard,
// so a plugin gets those only where the operator wrote them out.
var pluginPresets = map[string][]rbacv1.PolicyRule{
	// read-only: get, list and watch the workload, networking and
	// configuration objects of every namespace (never Secrets).
	"read-only": {
		{APIGroups: []string{""}, Resources: []string{"namespaces", "nodes", "pods", "services", "endpoints", "configmaps", "serviceaccounts", "persistentvolumes", "persistentvolumeclaims", "events"}, Verbs: readVerbs},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: readVerbs},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: readVerbs},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses", "networkpolicies"}, Verbs: readVerbs},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
	},
	// cloud-provider: what a cloud controller manager's node, route and
	// service (load balancer) controllers use, as upstream's
	// system:cloud-controller-manager role grants.
	"cloud-provider": {
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/status", "services/status"}, Verbs: []string{"patch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: readVerbs},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	},
	// ingress-controller: the leader part of an ingress plugin: read what
	// routes traffic (Ingresses and their classes, Services, endpoints, TLS
	// Secrets, namespaces for selectors, Nodes for addresses) and report
	// status. No leases (the host runs one instance, so there is no leader
	// election), no pods (backends are EndpointSlices) and no ConfigMaps
	// (a plugin's configuration is plugins.config.NAME).
	"ingress-controller": {
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: readVerbs},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "secrets", "namespaces", "nodes"}, Verbs: readVerbs},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	},
}

var readVerbs = []string{"get", "list", "watch"}

// PluginPresets lists the preset names, sorted.
func PluginPresets() []string {
	var out []string
	for n := range pluginPresets {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ApprovedRules is everything the operator approved for the plugin: its
// rules and its preset's.
func (e ExternalPlugin) ApprovedRules() []rbacv1.PolicyRule {
	return append(slices.Clone(e.Rules), pluginPresets[e.Preset]...)
}

// validateApproval checks that the operator approved permissions for the
// plugin and that each approved rule is a rule.
func (e ExternalPlugin) validateApproval(field string) []string {
	var errs []string
	if e.Preset != "" {
		if _, ok := pluginPresets[e.Preset]; !ok {
			errs = append(errs, fmt.Sprintf("%s.preset: %q is not a preset; presets are %s", field, e.Preset, strings.Join(PluginPresets(), ", ")))
		}
	}
	if e.Preset == "" && len(e.Rules) == 0 {
		errs = append(errs, fmt.Sprintf("%s.rules: approve the API permissions of third-party plugin %q: list the RBAC rules it may have "+
			"(rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}]) or name a preset (preset: %s; on the command line --plugin NAME=SHA256:PRESET)",
			field, e.Name, strings.Join(PluginPresets(), " | ")))
	}
	for i, r := range e.Rules {
		f := fmt.Sprintf("%s.rules[%d]", field, i)
		switch {
		case len(r.Verbs) == 0:
			errs = append(errs, f+".verbs: must list at least one verb")
		case len(r.Resources) == 0 && len(r.NonResourceURLs) == 0:
			errs = append(errs, f+": must list resources (with apiGroups) or nonResourceURLs")
		case len(r.Resources) > 0 && len(r.APIGroups) == 0:
			errs = append(errs, f+`.apiGroups: must be set with resources ("" is the core group)`)
		}
	}
	return errs
}
