package builtin

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/daemonset"
	"github.com/keelson/keelson/plugins/builtin/disruption"
	"github.com/keelson/keelson/plugins/builtin/endpoints"
	"github.com/keelson/keelson/plugins/builtin/endpointslice"
	"github.com/keelson/keelson/plugins/builtin/horizontalpodautoscaler"
	"github.com/keelson/keelson/plugins/builtin/internal/podfixture"
	"github.com/keelson/keelson/plugins/builtin/internal/replication"
	"github.com/keelson/keelson/plugins/builtin/job"
	"github.com/keelson/keelson/plugins/builtin/persistentvolume"
	"github.com/keelson/keelson/plugins/builtin/podgc"
	"github.com/keelson/keelson/plugins/builtin/resourcequota"
	"github.com/keelson/keelson/plugins/builtin/scheduler"
	"github.com/keelson/keelson/plugins/builtin/statefulset"
)

// podTransforms are the informer transforms of every built-in plugin that
// caches pods (the garbage collector keeps metadata only, through a
// metadata informer; it is not here).
var podTransforms = []struct {
	plugin string
	t      cache.TransformFunc
}{
	{"replicaset, replicationcontroller", replication.Transform},
	{"endpoints", endpoints.PodTransform},
	{"endpointslice", endpointslice.PodTransform},
	{"daemonset", daemonset.PodTransform},
	{"statefulset", statefulset.PodTransform},
	{"disruption", disruption.PodTransform},
	{"horizontalpodautoscaler", horizontalpodautoscaler.PodTransform},
	{"resourcequota", resourcequota.Transform},
	{"podgc", podgc.PodTransform},
	{"persistentvolume", persistentvolume.PodTransform},
	{"job", job.PodTransform},
	{"scheduler", scheduler.PodTransform},
}

// BenchmarkPodCacheBytes reports the live heap one cached pod costs in
// each plugin that caches pods, for 10,000 realistic pods, beside the full
// object with only managedFields stripped.
func BenchmarkPodCacheBytes(b *testing.B) {
	rows := append([]struct {
		plugin string
		t      cache.TransformFunc
	}{{"full object", func(o any) (any, error) { o.(*corev1.Pod).ManagedFields = nil; return o, nil }}}, podTransforms...)
	for _, tc := range rows {
		b.Run(tc.plugin, func(b *testing.B) {
			var per float64
			for b.Loop() {
				per = podfixture.CachedBytesPerPod(10000, tc.t)
			}
			b.ReportMetric(per, "B/pod")
		})
	}
}

// Every pod transform keeps a pod's identity (the cache's key, and the
// resource version the reflector reads) and drops its managedFields.
func TestPodTransformsReturnAPod(t *testing.T) {
	for _, tc := range podTransforms {
		in := podfixture.Realistic(1)
		out, err := tc.t(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.plugin, err)
		}
		p, ok := out.(*corev1.Pod)
		if !ok || p.Name != in.Name || p.Namespace != in.Namespace || p.UID != in.UID || p.ResourceVersion != in.ResourceVersion {
			t.Errorf("%s: transformed pod lost its identity: %#v", tc.plugin, out)
		}
		if p.ManagedFields != nil {
			t.Errorf("%s: managedFields kept", tc.plugin)
		}
	}
}
