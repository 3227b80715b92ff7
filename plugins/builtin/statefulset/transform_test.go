package statefulset

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/podfixture"
)

// The pod cache keeps what the StatefulSet controller reads.
func TestTransformKeepsWhatTheControllerReads(t *testing.T) {
	p := podfixture.Realistic(3)
	now := metav1.Now()
	p.DeletionTimestamp = &now
	podfixture.Keeps(t, transform, p, podfixture.Owned...)
}
