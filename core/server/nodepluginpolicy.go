package server

import (
	"context"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/plugins/host/nodehost"
)

// nodePluginPolicyName names the admission policy that keeps each node to
// its own node plugins' state objects.
const nodePluginPolicyName = "keelson-node-plugin-state"

// nodePluginPolicy: RBAC lets every node create and update Plugin objects
// (a node cannot be limited to names it does not know yet), so this policy
// narrows it, as the NodeRestriction admission plugin does for Node and
// Pod objects: a node may write only PLUGIN.<its name>, labelled
// keelson.io/node=<its name>, with scope node. Other users (the leader's
// plugin host, administrators) are not matched.
func nodePluginPolicy() (*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding) {
	label := func(obj, key string) string {
		return fmt.Sprintf("has(%[1]s.metadata.labels) && %[2]q in %[1]s.metadata.labels ? %[1]s.metadata.labels[%[2]q] : ''", obj, key)
	}
	forbidden := ptr.To(metav1.StatusReasonForbidden)
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: nodePluginPolicyName},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					// Nodes have no delete right on Plugin objects at all.
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule: admissionv1.Rule{
						APIGroups: []string{pluginGVR.Group}, APIVersions: []string{"*"}, Resources: []string{pluginGVR.Resource, pluginGVR.Resource + "/status"},
					},
				},
			}}},
			MatchConditions: []admissionv1.MatchCondition{{
				Name:       "nodes-only",
				Expression: fmt.Sprintf("%q in request.userInfo.groups", pki.NodesGroup),
			}},
			Variables: []admissionv1.Variable{
				{Name: "node", Expression: label("object", nodehost.LabelNode)},
				{Name: "plugin", Expression: label("object", nodehost.LabelNodePlugin)},
			},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("variables.node != '' && request.userInfo.username == %q + variables.node", pki.NodeUserPrefix),
				Message:    fmt.Sprintf("a node may only write its own node plugins' state: label %s must be the node's own name", nodehost.LabelNode),
				Reason:     forbidden,
			}, {
				Expression: "variables.plugin != '' && object.metadata.name == variables.plugin + '.' + variables.node",
				Message:    fmt.Sprintf("a node plugin's state object is named PLUGIN.NODE after its labels %s and %s", nodehost.LabelNodePlugin, nodehost.LabelNode),
				Reason:     forbidden,
			}, {
				Expression: fmt.Sprintf("request.operation != 'UPDATE' || (%s) == variables.node", label("oldObject", nodehost.LabelNode)),
				Message:    "a node may not take over another node's plugin state object",
				Reason:     forbidden,
			}, {
				Expression: "has(object.spec) && has(object.spec.scope) && object.spec.scope == 'node'",
				Message:    "a node may only write Plugin objects with spec.scope node",
				Reason:     forbidden,
			}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: nodePluginPolicyName},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        nodePluginPolicyName,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
		},
	}
	return policy, binding
}

// ensureNodePluginPolicy creates or corrects the policy and its binding.
func ensureNodePluginPolicy(ctx context.Context, c kubernetes.Interface) error {
	want, wantBinding := nodePluginPolicy()
	policies := c.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	got, err := policies.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = policies.Create(ctx, want, metav1.CreateOptions{})
	case err == nil && !equality.Semantic.DeepDerivative(want.Spec, got.Spec):
		got.Spec = want.Spec
		_, err = policies.Update(ctx, got, metav1.UpdateOptions{})
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ValidatingAdmissionPolicy %s: %w", want.Name, err)
	}
	bindings := c.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	gotBinding, err := bindings.Get(ctx, wantBinding.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = bindings.Create(ctx, wantBinding, metav1.CreateOptions{})
	case err == nil && !equality.Semantic.DeepDerivative(wantBinding.Spec, gotBinding.Spec):
		gotBinding.Spec = wantBinding.Spec
		_, err = bindings.Update(ctx, gotBinding, metav1.UpdateOptions{})
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ValidatingAdmissionPolicyBinding %s: %w", wantBinding.Name, err)
	}
	return nil
}
