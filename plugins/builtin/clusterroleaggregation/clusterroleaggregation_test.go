package clusterroleaggregation

import (
	"context"
	"io"
	"log/slog"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

func rule(verb, resource string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: []string{verb}, APIGroups: []string{""}, Resources: []string{resource}}
}

func role(name string, lbl map[string]string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbl}, Rules: rules}
}

func aggregated(name string, rules []rbacv1.PolicyRule, selectors ...map[string]string) *rbacv1.ClusterRole {
	r := role(name, nil, rules...)
	r.AggregationRule = &rbacv1.AggregationRule{}
	for _, s := range selectors {
		r.AggregationRule.ClusterRoleSelectors = append(r.AggregationRule.ClusterRoleSelectors, metav1.LabelSelector{MatchLabels: s})
	}
	return r
}

func fixture(t *testing.T, roles ...*rbacv1.ClusterRole) (*controller, *fake.Clientset) {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	client := fake.NewClientset()
	for _, r := range roles {
		if err := idx.Add(r); err != nil {
			t.Fatal(err)
		}
		if err := client.Tracker().Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return &controller{client: client, roles: rbaclisters.NewClusterRoleLister(idx),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, client
}

var (
	toEdit = map[string]string{"rbac.authorization.k8s.io/aggregate-to-edit": "true"}
	toView = map[string]string{"rbac.authorization.k8s.io/aggregate-to-view": "true"}
)

func TestAggregate(t *testing.T) {
	getPods, listPods, createDeploy := rule("get", "pods"), rule("list", "pods"), rule("create", "deployments")
	tests := []struct {
		name  string
		roles []*rbacv1.ClusterRole
		want  []rbacv1.PolicyRule
	}{
		{"union in selector then name order, duplicates once", []*rbacv1.ClusterRole{
			aggregated("edit", nil, toEdit, toView),
			role("z-view", toView, getPods),
			role("b-edit", toEdit, createDeploy, getPods),
			role("a-edit", toEdit, listPods),
		}, []rbacv1.PolicyRule{listPods, createDeploy, getPods}},
		{"unlabelled roles are not selected", []*rbacv1.ClusterRole{
			aggregated("view", nil, toView), role("other", nil, getPods),
		}, nil},
		{"a role matching its own selector is skipped", []*rbacv1.ClusterRole{
			func() *rbacv1.ClusterRole { r := aggregated("self", nil, toView); r.Labels = toView; return r }(),
			role("v", toView, getPods),
		}, []rbacv1.PolicyRule{getPods}},
		{"stale rules are replaced", []*rbacv1.ClusterRole{
			aggregated("view", []rbacv1.PolicyRule{createDeploy}, toView), role("v", toView, getPods),
		}, []rbacv1.PolicyRule{getPods}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, client := fixture(t, tc.roles...)
			if _, err := c.reconcile(context.Background(), tc.roles[0].Name); err != nil {
				t.Fatal(err)
			}
			got, err := client.RbacV1().ClusterRoles().Get(context.Background(), tc.roles[0].Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(got.Rules, tc.want) {
				t.Errorf("rules\n got %+v\nwant %+v", got.Rules, tc.want)
			}
		})
	}
}

func TestUpToDateRoleIsNotWritten(t *testing.T) {
	get := rule("get", "pods")
	c, client := fixture(t, aggregated("view", []rbacv1.PolicyRule{get}, toView), role("v", toView, get))
	if _, err := c.reconcile(context.Background(), "view"); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		t.Errorf("unexpected %s of an up-to-date role", a.GetVerb())
	}
}

func TestNonAggregatedAndMissingRolesAreIgnored(t *testing.T) {
	c, client := fixture(t, role("plain", toView, rule("get", "pods")))
	for _, name := range []string{"plain", "gone"} {
		if _, err := c.reconcile(context.Background(), name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if n := len(client.Actions()); n != 0 {
		t.Errorf("%d API calls: %v", n, client.Actions())
	}
}

func TestBadSelectorIsReported(t *testing.T) {
	bad := aggregated("bad", nil)
	bad.AggregationRule.ClusterRoleSelectors = []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "k", Operator: "Sometimes"}}}}
	c, _ := fixture(t, bad)
	if _, err := c.reconcile(context.Background(), "bad"); err == nil {
		t.Fatal("no error for an invalid selector operator")
	}
}
