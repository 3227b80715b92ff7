package servicenet

import rbacv1 "k8s.io/api/rbac/v1"

// RBACRules are the API permissions service networking needs on every
// node, beyond what the Node authorizer grants a node: NetworkPolicy
// peers are pods of the whole cluster (a node may otherwise list only its
// own), and the proxy and DNS read every Service and EndpointSlice. The
// server binds them to the nodes' group (system:nodes) in a ClusterRole.
func RBACRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces", "nodes"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: read},
	}
}
