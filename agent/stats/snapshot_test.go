package stats

import (
	"testing"
	"time"
)

func TestPodUsageAddSumsContainers(t *testing.T) {
	t0 := time.Unix(100, 0)
	var p PodUsage
	p.Add(ContainerUsage{Name: "a", Usage: Usage{Time: t0, CPUNanos: 5, MemoryUsage: 10, WorkingSet: 7, RSS: 3}})
	p.Add(ContainerUsage{Name: "b", Usage: Usage{Time: t0.Add(time.Second), CPUNanos: 1, MemoryUsage: 2, WorkingSet: 2, RSS: 1}})
	want := Usage{Time: t0.Add(time.Second), CPUNanos: 6, MemoryUsage: 12, WorkingSet: 9, RSS: 4}
	if p.Usage != want || len(p.Containers) != 2 {
		t.Errorf("sum %+v (%d containers), want %+v (2)", p.Usage, len(p.Containers), want)
	}
}
