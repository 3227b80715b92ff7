package metricsserver

import (
	"fmt"
	"io"
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The /metrics/resource families the store reads, kubelet's names.
const (
	nodeCPU            = "node_cpu_usage_seconds_total"
	nodeMemory         = "node_memory_working_set_bytes"
	containerCPU       = "container_cpu_usage_seconds_total"
	containerMemory    = "container_memory_working_set_bytes"
	containerStartTime = "container_start_time_seconds"
)

// nodeReads is what one node's /metrics/resource holds.
type nodeReads struct {
	node       point
	hasNode    bool
	containers map[podRef]map[string]containerPoint
}

// parseResource reads a kubelet /metrics/resource answer (Prometheus text
// format). Samples without a timestamp are taken as read at scraped.
func parseResource(r io.Reader, scraped time.Time) (nodeReads, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nodeReads{}, fmt.Errorf("parsing /metrics/resource: %w", err)
	}
	out := nodeReads{containers: map[podRef]map[string]containerPoint{}}
	cpu, cpuOK := single(families[nodeCPU], scraped)
	mem, memOK := single(families[nodeMemory], scraped)
	if cpuOK && memOK {
		out.node = point{ts: cpu.ts, cpuNanos: nanos(cpu.v), workingSet: uint64(mem.v)}
		out.hasNode = true
	}
	type key struct {
		pod       podRef
		container string
	}
	reads := map[key]*containerPoint{}
	at := func(m *dto.Metric) *containerPoint {
		k := key{podRef{label(m, "namespace"), label(m, "pod")}, label(m, "container")}
		if reads[k] == nil {
			reads[k] = &containerPoint{}
		}
		return reads[k]
	}
	for _, m := range metrics(families[containerCPU]) {
		c := at(m)
		c.ts, c.cpuNanos = stamp(m, scraped), nanos(value(m))
	}
	for _, m := range metrics(families[containerMemory]) {
		at(m).workingSet = uint64(value(m))
	}
	for _, m := range metrics(families[containerStartTime]) {
		sec, frac := math.Modf(value(m))
		at(m).start = time.Unix(int64(sec), int64(frac*1e9))
	}
	for k, c := range reads {
		if c.ts.IsZero() || k.pod.name == "" || k.container == "" {
			continue // no CPU read: not a running container's
		}
		if out.containers[k.pod] == nil {
			out.containers[k.pod] = map[string]containerPoint{}
		}
		out.containers[k.pod][k.container] = *c
	}
	return out, nil
}

type sample struct {
	ts time.Time
	v  float64
}

func single(f *dto.MetricFamily, scraped time.Time) (sample, bool) {
	ms := metrics(f)
	if len(ms) != 1 {
		return sample{}, false
	}
	return sample{ts: stamp(ms[0], scraped), v: value(ms[0])}, true
}

func metrics(f *dto.MetricFamily) []*dto.Metric {
	if f == nil {
		return nil
	}
	return f.GetMetric()
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

func stamp(m *dto.Metric, scraped time.Time) time.Time {
	if m.TimestampMs == nil {
		return scraped
	}
	return time.UnixMilli(m.GetTimestampMs())
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// nanos turns core-seconds into core-nanoseconds.
func nanos(seconds float64) uint64 {
	if seconds <= 0 {
		return 0
	}
	return uint64(math.Round(seconds * 1e9))
}
