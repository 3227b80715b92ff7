package kubeletapi

import (
	"github.com/prometheus/client_golang/prometheus"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// ClaimVolumes lists the statistics of the claims the node's pods mount.
type ClaimVolumes interface {
	ClaimVolumeStats() []statsv1alpha1.VolumeStats
}

// The claims' volume families kubelet serves on /metrics, named, labelled
// and described as kubelet's (pkg/kubelet/metrics/collectors): one sample
// per claim mounted by a pod of this node.
var volumeDescs = struct {
	capacity, available, used, inodes, inodesFree, inodesUsed *prometheus.Desc
}{
	capacity:   volumeDesc("capacity_bytes", "Capacity in bytes of the volume"),
	available:  volumeDesc("available_bytes", "Number of available bytes in the volume"),
	used:       volumeDesc("used_bytes", "Number of used bytes in the volume"),
	inodes:     volumeDesc("inodes", "Maximum number of inodes in the volume"),
	inodesFree: volumeDesc("inodes_free", "Number of free inodes in the volume"),
	inodesUsed: volumeDesc("inodes_used", "Number of used inodes in the volume"),
}

func volumeDesc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("kubelet_volume_stats_"+name, "[ALPHA] "+help,
		[]string{"namespace", "persistentvolumeclaim"}, nil)
}

// volumeStatsCollector serves kubelet_volume_stats_* from one read of the
// claims' statistics per scrape.
type volumeStatsCollector struct{ volumes ClaimVolumes }

// NewVolumeStatsCollector returns the collector of the claims' volume
// statistics, for the agent's /metrics registry.
func NewVolumeStatsCollector(v ClaimVolumes) prometheus.Collector {
	return volumeStatsCollector{volumes: v}
}

func (c volumeStatsCollector) Describe(ch chan<- *prometheus.Desc) {
	d := volumeDescs
	for _, desc := range []*prometheus.Desc{d.capacity, d.available, d.used, d.inodes, d.inodesFree, d.inodesUsed} {
		ch <- desc
	}
}

func (c volumeStatsCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[[2]string]bool{}
	for _, v := range c.volumes.ClaimVolumeStats() {
		if v.PVCRef == nil {
			continue
		}
		key := [2]string{v.PVCRef.Namespace, v.PVCRef.Name}
		if seen[key] { // two pods mounting one claim: one sample
			continue
		}
		seen[key] = true
		d := volumeDescs
		for _, s := range []struct {
			desc *prometheus.Desc
			v    *uint64
		}{{d.capacity, v.CapacityBytes}, {d.available, v.AvailableBytes}, {d.used, v.UsedBytes},
			{d.inodes, v.Inodes}, {d.inodesFree, v.InodesFree}, {d.inodesUsed, v.InodesUsed}} {
			if s.v != nil {
				ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, float64(*s.v), key[0], key[1])
			}
		}
	}
}
