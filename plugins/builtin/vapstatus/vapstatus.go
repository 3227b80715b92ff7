// Package vapstatus is the built-in plugin that type-checks every
// ValidatingAdmissionPolicy's CEL expressions against the schemas of the
// kinds it matches and writes the result to status.typeChecking, with
// status.observedGeneration, as kube-controller-manager's
// validatingadmissionpolicy-status controller does. kube-apiserver enforces
// the policies in-process; this is what tells their author that an
// expression refers to a field the matched kinds do not have.
package vapstatus

import (
	"context"
	"fmt"
	"log/slog"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	admissionapply "k8s.io/client-go/applyconfigurations/admissionregistration/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	admissionlisters "k8s.io/client-go/listers/admissionregistration/v1"
	"k8s.io/client-go/restmapper"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "vapstatus"

// fieldManager owns status.typeChecking, under upstream's controller name.
const fieldManager = "validatingadmissionpolicy-status-controller"

// Plugin returns the vapstatus plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{admissionregistrationv1.GroupName}, Resources: []string{"validatingadmissionpolicies"},
			Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{admissionregistrationv1.GroupName}, Resources: []string{"validatingadmissionpolicies/status"},
			Verbs: []string{"get", "patch", "update"}},
		// The schemas of the matched kinds come from the API server's
		// discovery and OpenAPI documents.
		{NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/openapi/v3", "/openapi/v3/*"}, Verbs: []string{"get"}},
	}
	return p
}

type controller struct {
	client   kubernetes.Interface
	policies admissionlisters.ValidatingAdmissionPolicyLister
	checker  interface {
		Check(*admissionregistrationv1.ValidatingAdmissionPolicy) []admissionregistrationv1.ExpressionWarning
	}
	// rediscover forgets the cached discovery, so a policy on a kind that
	// appeared since (a new CRD) is checked against it.
	rediscover func()
	logger     *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	if err := sdk.DecodeConfig(env.Config, &struct{}{}); err != nil {
		return nil, fmt.Errorf("plugin %s takes no configuration: %w", Name, err)
	}
	disco := memory.NewMemCacheClient(client.Discovery())
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(disco)
	checker := &validating.TypeChecker{SchemaResolver: &resolver.ClientDiscoveryResolver{Discovery: disco}, RestMapper: mapper}
	inf := f.Admissionregistration().V1().ValidatingAdmissionPolicies()
	c := &controller{client: client, policies: inf.Lister(), checker: checker, rediscover: mapper.Reset, logger: env.Logger}
	return sdk.ReconcileObjects(Name, inf.Informer(), 1, c.reconcile, c.logger)
}

// reconcile type-checks a policy whose spec (generation) has not been
// checked yet and records the warnings, or none, with that generation.
func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	policy, err := c.policies.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if policy.Status.TypeChecking != nil && policy.Status.ObservedGeneration >= policy.Generation {
		return sdk.Result{}, nil
	}
	if c.rediscover != nil {
		c.rediscover()
	}
	warnings := c.checker.Check(policy)
	tc := admissionapply.TypeChecking()
	for _, w := range warnings {
		tc.WithExpressionWarnings(admissionapply.ExpressionWarning().WithFieldRef(w.FieldRef).WithWarning(w.Warning))
	}
	apply := admissionapply.ValidatingAdmissionPolicy(name).WithStatus(
		admissionapply.ValidatingAdmissionPolicyStatus().WithObservedGeneration(policy.Generation).WithTypeChecking(tc))
	_, err = c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().ApplyStatus(ctx, apply,
		metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, fmt.Errorf("writing the type check of validatingadmissionpolicy %s: %w", name, err)
	}
	c.logger.Info("type-checked validatingadmissionpolicy", "policy", name, "generation", policy.Generation, "warnings", len(warnings))
	return sdk.Result{}, nil
}
