package agenttoken

import (
	"context"
	"crypto/subtle"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/internal/join"
)

// RecordTTL is how long a Verifier trusts the record it read: a rotation
// reaches a server's supervisor within it, and a flood of wrong tokens costs
// one API read per RecordTTL, not one per request.
const RecordTTL = 5 * time.Second

// Verifier checks agent token secrets against the record, read through the
// API at most once per RecordTTL.
type Verifier struct {
	client kubernetes.Interface
	now    func() time.Time

	mu   sync.Mutex
	hash []byte // the record's hash, as read at
	at   time.Time
}

// NewVerifier returns a Verifier reading the record with c.
func NewVerifier(c kubernetes.Interface) *Verifier {
	return &Verifier{client: c, now: time.Now}
}

// Verify reports whether secret is the cluster's agent token secret.
func (v *Verifier) Verify(ctx context.Context, secret string) (bool, error) {
	want, err := v.record(ctx)
	if err != nil {
		return false, err
	}
	got := join.SecretHash(secret)
	return len(want) > 0 && subtle.ConstantTimeCompare(want, []byte(got)) == 1, nil
}

// record returns the record's hash, from the cache while it is fresh.
func (v *Verifier) record(ctx context.Context) ([]byte, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.hash != nil && v.now().Sub(v.at) < RecordTTL {
		return v.hash, nil
	}
	s, err := v.client.CoreV1().Secrets(Namespace).Get(ctx, SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, ErrNoRecord
	}
	if err != nil {
		return nil, fmt.Errorf("reading the agent token record: %w", err)
	}
	v.hash, v.at = s.Data[HashKey], v.now()
	return v.hash, nil
}

// Verify reports whether secret is the cluster's agent token secret,
// reading the record once (see Verifier for repeated checks).
func Verify(ctx context.Context, c kubernetes.Interface, secret string) (bool, error) {
	return NewVerifier(c).Verify(ctx, secret)
}
