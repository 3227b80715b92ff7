package workloads

import (
	"context"
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/builtin/deployment"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
)

// refusePods makes the API server refuse every pod created in namespace
// (a ValidatingAdmissionPolicy, evaluated in-process) and returns how to
// lift the ban.
func (c *cluster) refusePods(t *testing.T, namespace string) (lift func()) {
	t.Helper()
	ctx := context.Background()
	fail := admissionv1.Fail
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "no-pods-" + namespace},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "pods are not allowed here"}},
		},
	}
	if _, err := c.client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace},
			}},
		},
	}
	if _, err := c.client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The policy takes effect once the API server has loaded it.
	eventually(t, "pod creation refused", func() error {
		probe := &v1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "x"}}}}
		p, err := c.client.CoreV1().Pods(namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			return fmt.Errorf("pod %s admitted", p.GenerateName)
		}
		return nil
	})
	return func() {
		if err := c.client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplicaFailure checks what a user sees when pods cannot be created:
// a ReplicaFailure condition on the ReplicaSet and on its Deployment, and
// FailedCreate events; and that both clear once pods can be created.
func TestReplicaFailure(t *testing.T) {
	c := startCluster(t, replicaset.Name, deployment.Name)
	const ns = "refused"
	c.namespace(t, ns)
	c.readyPods(t, ns, nil)
	lift := c.refusePods(t, ns)

	c.apply(t, ns, deploymentYAML("web", "nginx:1.27", 3))
	d := c.deployment(t, ns, "web")
	var rs appsv1.ReplicaSet
	eventually(t, "ReplicaFailure on the replica set and the deployment", func() error {
		rss := c.replicaSetsOf(t, ns, d.UID)
		if len(rss) != 1 {
			return fmt.Errorf("%d replica sets", len(rss))
		}
		rs = rss[0]
		rsCond := findRSCondition(rs.Status.Conditions, appsv1.ReplicaSetReplicaFailure)
		dCond := findDeploymentCondition(c.deployment(t, ns, "web").Status.Conditions, appsv1.DeploymentReplicaFailure)
		if rsCond == nil || rsCond.Reason != "FailedCreate" || !strings.Contains(rsCond.Message, "pods are not allowed here") {
			return fmt.Errorf("replica set conditions %+v", rs.Status.Conditions)
		}
		if dCond == nil || dCond.Reason != "FailedCreate" {
			return fmt.Errorf("deployment conditions %+v", c.deployment(t, ns, "web").Status.Conditions)
		}
		return nil
	})
	c.waitEvent(t, ns, rs.UID, "FailedCreate: Error creating: ")

	lift()
	c.rolloutStatus(t, ns, "web")
	eventually(t, "conditions cleared", func() error {
		rs := c.waitReplicaSetStatus(t, ns, rs.Name, 3, 3, 3)
		if cond := findRSCondition(rs.Status.Conditions, appsv1.ReplicaSetReplicaFailure); cond != nil {
			return fmt.Errorf("replica set still has %+v", cond)
		}
		if cond := findDeploymentCondition(c.deployment(t, ns, "web").Status.Conditions, appsv1.DeploymentReplicaFailure); cond != nil {
			return fmt.Errorf("deployment still has %+v", cond)
		}
		return nil
	})
}

func findRSCondition(cs []appsv1.ReplicaSetCondition, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

func findDeploymentCondition(cs []appsv1.DeploymentCondition, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}
