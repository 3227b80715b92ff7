// Package clusterroleaggregation is the built-in plugin that fills the rules
// of every ClusterRole carrying an aggregationRule with the rules of the
// ClusterRoles its selectors match, as kube-controller-manager's
// clusterrole-aggregation controller does. It is what gives the bootstrap
// roles admin, edit and view their rules, and what adds a CRD's
// "aggregate-to-edit" role to edit as soon as the role is created.
package clusterroleaggregation

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "clusterroleaggregation"

// FieldManager owns the aggregated rules (server-side apply), the name
// upstream's controller uses, so tools see the same owner.
const FieldManager = "clusterrole-aggregation-controller"

// Config is the plugin's config section.
type Config struct {
	// Workers is how many aggregated ClusterRoles are written at once
	// (default 1; there are few of them).
	Workers int `json:"workers"`
}

// Plugin returns the clusterroleaggregation plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		// escalate: an aggregated role holds rules its writer need not hold
		// itself (RBAC's escalation check would refuse them otherwise).
		{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"},
			Verbs: []string{"get", "list", "watch", "update", "patch", "escalate"}},
	}
	return p
}

type controller struct {
	client kubernetes.Interface
	roles  rbaclisters.ClusterRoleLister
	queue  workqueue.TypedRateLimitingInterface[string]
	logger *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 1}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("plugin %s config: workers must be at least 1, got %d", Name, cfg.Workers)
	}
	inf := f.Rbac().V1().ClusterRoles()
	c := &controller{client: client, roles: inf.Lister(), queue: sdk.NewQueue[string](Name), logger: env.Logger}
	// Any ClusterRole change may change what some aggregated role selects
	// (a label added or removed, rules edited), so every aggregated role is
	// looked at again; there are few, and an unchanged one costs no write.
	all := func(any) { c.enqueueAggregated() }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: all, UpdateFunc: func(_, obj any) { all(obj) }, DeleteFunc: all,
	}); err != nil {
		return nil, fmt.Errorf("watching clusterroles: %w", err)
	}
	return func(ctx context.Context) error {
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		return nil
	}, nil
}

func (c *controller) enqueueAggregated() {
	roles, err := c.roles.List(labels.Everything())
	if err != nil {
		c.logger.Warn("listing cached clusterroles", "error", err)
		return
	}
	for _, r := range roles {
		if r.AggregationRule != nil {
			c.queue.Add(r.Name)
		}
	}
}

// reconcile sets the rules of the aggregated ClusterRole name to the
// union, without duplicates, of the rules of every other ClusterRole its
// selectors match, in selector order and then by role name.
func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	role, err := c.roles.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if role.AggregationRule == nil {
		return sdk.Result{}, nil
	}
	want, err := c.aggregate(role)
	if err != nil {
		return sdk.Result{}, err
	}
	if equality.Semantic.DeepEqual(want, role.Rules) {
		return sdk.Result{}, nil
	}
	if err := c.apply(ctx, name, want); err != nil {
		return sdk.Result{}, fmt.Errorf("writing the aggregated rules of clusterrole %s: %w", name, err)
	}
	c.logger.Info("aggregated clusterrole", "clusterrole", name, "rules", len(want))
	return sdk.Result{}, nil
}

// aggregate computes the rules role should hold.
func (c *controller) aggregate(role *rbacv1.ClusterRole) ([]rbacv1.PolicyRule, error) {
	var rules []rbacv1.PolicyRule
	for i, sel := range role.AggregationRule.ClusterRoleSelectors {
		selector, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			return nil, fmt.Errorf("clusterrole %s: aggregationRule.clusterRoleSelectors[%d]: %w", role.Name, i, err)
		}
		matched, err := c.roles.List(selector)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(matched, func(a, b *rbacv1.ClusterRole) int { return strings.Compare(a.Name, b.Name) })
		for _, m := range matched {
			if m.Name == role.Name {
				continue
			}
			for _, r := range m.Rules {
				if !slices.ContainsFunc(rules, func(have rbacv1.PolicyRule) bool { return equality.Semantic.DeepEqual(have, r) }) {
					rules = append(rules, *r.DeepCopy())
				}
			}
		}
	}
	return rules, nil
}

// apply writes rules as the role's only rules through server-side apply,
// taking them over from whoever wrote them before (a user's kubectl edit
// of an aggregated role is overwritten, as upstream does).
func (c *controller) apply(ctx context.Context, name string, rules []rbacv1.PolicyRule) error {
	ac := rbacac.ClusterRole(name)
	for _, r := range rules {
		pr := rbacac.PolicyRule().WithVerbs(r.Verbs...).WithAPIGroups(r.APIGroups...).
			WithResources(r.Resources...).WithResourceNames(r.ResourceNames...).WithNonResourceURLs(r.NonResourceURLs...)
		ac.WithRules(pr)
	}
	if len(rules) == 0 {
		// An explicit empty list, so apply removes rules we own.
		ac.Rules = []rbacac.PolicyRuleApplyConfiguration{}
	}
	_, err := c.client.RbacV1().ClusterRoles().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}
