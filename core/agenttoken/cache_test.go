package agenttoken

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keelson/keelson/internal/join"
)

// TestVerifierReadsTheRecordOncePerTTL: wrong tokens in a burst cost one
// API read, and a rotated record is seen once the cached one is RecordTTL old.
func TestVerifierReadsTheRecordOncePerTTL(t *testing.T) {
	ctx := context.Background()
	secret := func(s string) *v1.Secret {
		return &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: SecretName},
			Data: map[string][]byte{HashKey: []byte(join.SecretHash(s))}}
	}
	cs := fake.NewClientset(secret("first"))
	now := time.Unix(1000, 0)
	v := NewVerifier(cs)
	v.now = func() time.Time { return now }
	for i := 0; i < 100; i++ {
		if ok, err := v.Verify(ctx, "wrong"); ok || err != nil {
			t.Fatalf("a wrong token: %v %v", ok, err)
		}
	}
	if ok, _ := v.Verify(ctx, "first"); !ok {
		t.Error("the recorded token was refused")
	}
	if n := len(cs.Actions()); n != 1 {
		t.Errorf("%d API reads for 101 checks within the TTL, want 1", n)
	}
	if _, err := cs.CoreV1().Secrets(Namespace).Update(ctx, secret("second"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(RecordTTL)
	if ok, _ := v.Verify(ctx, "second"); !ok {
		t.Error("the rotated token was refused once the cache had expired")
	}
	if ok, _ := v.Verify(ctx, "first"); ok {
		t.Error("the old token still passes after rotation")
	}
}
