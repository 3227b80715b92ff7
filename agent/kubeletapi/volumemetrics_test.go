package kubeletapi

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

type fixedVolumes []statsv1alpha1.VolumeStats

func (f fixedVolumes) ClaimVolumeStats() []statsv1alpha1.VolumeStats { return f }

func u64(v uint64) *uint64 { return &v }

// TestVolumeStatsMetrics: each claim a pod of the node mounts gives one
// sample per family, labelled as kubelet labels them; volumes without a
// claim give none.
func TestVolumeStatsMetrics(t *testing.T) {
	claim := statsv1alpha1.VolumeStats{Name: "data", PVCRef: &statsv1alpha1.PVCReference{Namespace: "db", Name: "data-0"},
		FsStats: statsv1alpha1.FsStats{CapacityBytes: u64(128 << 20), AvailableBytes: u64(100 << 20), UsedBytes: u64(28 << 20),
			Inodes: u64(1000), InodesFree: u64(900), InodesUsed: u64(100)}}
	scratch := statsv1alpha1.VolumeStats{Name: "tmp", FsStats: statsv1alpha1.FsStats{CapacityBytes: u64(1)}}
	sum := fixedVolumes{claim, scratch, claim} // a second pod on the same claim
	r := prometheus.NewRegistry()
	r.MustRegister(NewVolumeStatsCollector(sum))
	want := `
# HELP kubelet_volume_stats_capacity_bytes [ALPHA] Capacity in bytes of the volume
# TYPE kubelet_volume_stats_capacity_bytes gauge
kubelet_volume_stats_capacity_bytes{namespace="db",persistentvolumeclaim="data-0"} 1.34217728e+08
# HELP kubelet_volume_stats_used_bytes [ALPHA] Number of used bytes in the volume
# TYPE kubelet_volume_stats_used_bytes gauge
kubelet_volume_stats_used_bytes{namespace="db",persistentvolumeclaim="data-0"} 2.9360128e+07
# HELP kubelet_volume_stats_inodes_used [ALPHA] Number of used inodes in the volume
# TYPE kubelet_volume_stats_inodes_used gauge
kubelet_volume_stats_inodes_used{namespace="db",persistentvolumeclaim="data-0"} 100
`
	if err := testutil.GatherAndCompare(r, strings.NewReader(want), "kubelet_volume_stats_capacity_bytes",
		"kubelet_volume_stats_used_bytes", "kubelet_volume_stats_inodes_used"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewVolumeStatsCollector(sum)); n != 6 {
		t.Errorf("%d samples; want 6 (six families, one claim)", n)
	}
}
