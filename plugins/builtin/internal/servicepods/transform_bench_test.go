package servicepods

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/podfixture"
)

// BenchmarkPodCacheBytes reports the live heap one cached pod costs in
// the endpoints controllers (SlimPod) against the full object (only
// managedFields stripped), for 10,000 realistic pods.
func BenchmarkPodCacheBytes(b *testing.B) {
	for _, tc := range []struct {
		name string
		t    cache.TransformFunc
	}{
		{"Full", func(o any) (any, error) { o.(*corev1.Pod).ManagedFields = nil; return o, nil }},
		{"Slim", SlimPod},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = podfixture.CachedBytesPerPod(10000, tc.t)
			}
			b.ReportMetric(per, "B/pod")
		})
	}
}
