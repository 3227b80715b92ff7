package vapstatus

import (
	"context"
	"io"
	"log/slog"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// checker warns about every expression that mentions "nonexistent".
type checker struct{ calls int }

func (c *checker) Check(p *admissionregistrationv1.ValidatingAdmissionPolicy) []admissionregistrationv1.ExpressionWarning {
	c.calls++
	var out []admissionregistrationv1.ExpressionWarning
	for _, v := range p.Spec.Validations {
		if v.Expression == "object.nonexistent" {
			out = append(out, admissionregistrationv1.ExpressionWarning{FieldRef: "spec.validations[0].expression", Warning: "no such field"})
		}
	}
	return out
}

func TestReconcile(t *testing.T) {
	policy := func(name, expr string, generation, observed int64, checked bool) *admissionregistrationv1.ValidatingAdmissionPolicy {
		p := &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name, Generation: generation},
			Spec:       admissionregistrationv1.ValidatingAdmissionPolicySpec{Validations: []admissionregistrationv1.Validation{{Expression: expr}}},
			Status:     admissionregistrationv1.ValidatingAdmissionPolicyStatus{ObservedGeneration: observed},
		}
		if checked {
			p.Status.TypeChecking = &admissionregistrationv1.TypeChecking{}
		}
		return p
	}
	tests := []struct {
		name         string
		policy       *admissionregistrationv1.ValidatingAdmissionPolicy
		wantChecked  bool
		wantWarnings int
	}{
		{"new policy with a bad expression", policy("p", "object.nonexistent", 1, 0, false), true, 1},
		{"new policy that checks out", policy("p", "object.spec.replicas > 1", 1, 0, false), true, 0},
		{"edited since the last check", policy("p", "object.nonexistent", 3, 2, true), true, 1},
		{"already checked at this generation", policy("p", "object.nonexistent", 2, 2, true), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.policy)
			f := informers.NewSharedInformerFactory(client, 0)
			lister := f.Admissionregistration().V1().ValidatingAdmissionPolicies().Lister()
			ctx := context.Background()
			f.Start(ctx.Done())
			f.WaitForCacheSync(ctx.Done())
			ch := &checker{}
			c := &controller{client: client, policies: lister, checker: ch,
				logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if _, err := c.reconcile(ctx, "p"); err != nil {
				t.Fatal(err)
			}
			if (ch.calls > 0) != tc.wantChecked {
				t.Fatalf("checked %d times, want checked %v", ch.calls, tc.wantChecked)
			}
			if !tc.wantChecked {
				return
			}
			got, err := client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "p", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.ObservedGeneration != tc.policy.Generation || got.Status.TypeChecking == nil ||
				len(got.Status.TypeChecking.ExpressionWarnings) != tc.wantWarnings {
				t.Errorf("status %+v, want generation %d and %d warnings", got.Status, tc.policy.Generation, tc.wantWarnings)
			}
		})
	}
}
