package metricsserver

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1700000000, 0)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func nodeBatch(name string, ts time.Time, cpuSeconds float64, mem uint64) *batch {
	b := newBatch()
	b.nodes[name] = point{ts: ts, cpuNanos: nanos(cpuSeconds), workingSet: mem}
	return b
}

func TestNodeUsageNeedsTwoReads(t *testing.T) {
	s := newStore(15 * time.Second)
	s.update(nodeBatch("n1", at(0), 100, 1<<30))
	if _, ok := s.node("n1"); ok {
		t.Fatal("usage after one read")
	}
	s.update(nodeBatch("n1", at(15), 115, 2<<30)) // one core busy over 15 s
	u, ok := s.node("n1")
	if !ok || u.nanoCores != 1e9 || u.memory != 2<<30 || u.window != 15*time.Second || !u.ts.Equal(at(15)) {
		t.Fatalf("usage %+v %v, want 1 core, 2Gi, 15s window at t+15", u, ok)
	}
	s.update(nodeBatch("n1", at(15), 115, 2<<30)) // the same read again
	if u2, _ := s.node("n1"); u2 != u {
		t.Errorf("a repeated read changed the usage: %+v", u2)
	}
	s.update(nodeBatch("n1", at(30), 3, 1<<30)) // the counter went back: a reboot
	if _, ok := s.node("n1"); ok {
		t.Error("usage across a counter reset")
	}
	s.update(newBatch())
	if _, ok := s.node("n1"); ok {
		t.Error("a node the latest scrape did not read still has usage")
	}
}

func podBatch(ts time.Time, containers map[string]containerPoint) *batch {
	b := newBatch()
	b.pods[podRef{"default", "web"}] = containers
	_ = ts
	return b
}

func TestPodUsage(t *testing.T) {
	s := newStore(15 * time.Second)
	old := at(-100)
	// Both ran for longer than a resolution before the first read.
	s.update(podBatch(at(0), map[string]containerPoint{
		"app":  {point: point{ts: at(0), cpuNanos: nanos(10), workingSet: 100}, start: old},
		"side": {point: point{ts: at(0), cpuNanos: nanos(1), workingSet: 50}, start: at(-10)},
	}))
	if _, _, ok := s.pod(podRef{"default", "web"}); ok {
		t.Fatal("a pod with a container read once has usage")
	}
	s.update(podBatch(at(15), map[string]containerPoint{
		"app":  {point: point{ts: at(15), cpuNanos: nanos(13), workingSet: 200}, start: old},
		"side": {point: point{ts: at(15), cpuNanos: nanos(4), workingSet: 60}, start: at(-10)},
	}))
	pod, cs, ok := s.pod(podRef{"default", "web"})
	if !ok || len(cs) != 2 || cs[0].name != "app" || cs[1].name != "side" {
		t.Fatalf("pod usage %+v %+v %v", pod, cs, ok)
	}
	if cs[0].nanoCores != 2e8 || cs[0].memory != 200 || cs[1].nanoCores != 2e8 || pod.window != 15*time.Second {
		t.Errorf("containers %+v, window %s; want 200m each over 15s", cs, pod.window)
	}
	// "app" restarts 5 s before the next read: counted from its start.
	s.update(podBatch(at(30), map[string]containerPoint{
		"app":  {point: point{ts: at(30), cpuNanos: nanos(1), workingSet: 10}, start: at(25)},
		"side": {point: point{ts: at(30), cpuNanos: nanos(7), workingSet: 60}, start: at(-10)},
	}))
	_, cs, ok = s.pod(podRef{"default", "web"})
	if !ok || cs[0].nanoCores != 2e8 || cs[0].window != 5*time.Second {
		t.Errorf("after a restart: %+v %v; want 200m over the 5 s since the start", cs, ok)
	}
}

func TestNewContainerHasUsageAfterOneRead(t *testing.T) {
	s := newStore(15 * time.Second)
	s.update(podBatch(at(15), map[string]containerPoint{
		"app": {point: point{ts: at(15), cpuNanos: nanos(5), workingSet: 1}, start: at(5)},
	}))
	_, cs, ok := s.pod(podRef{"default", "web"})
	if !ok || cs[0].nanoCores != 5e8 || cs[0].window != 10*time.Second {
		t.Errorf("%+v %v; want 500m over the 10 s since it started", cs, ok)
	}
}

const resourceText = `# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="loop",namespace="default",pod="busy"} 2.5 1700000015000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="loop",namespace="default",pod="busy"} 2048 1700000015000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="loop",namespace="default",pod="busy"} 1.6999999e+09 1699999900000
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 1234.5 1700000015000
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.073741824e+09 1700000015000
# TYPE resource_scrape_error gauge
resource_scrape_error 0
`

func TestParseResource(t *testing.T) {
	r, err := parseResource(strings.NewReader(resourceText), at(99))
	if err != nil {
		t.Fatal(err)
	}
	if !r.hasNode || r.node.cpuNanos != 1234_500_000_000 || r.node.workingSet != 1<<30 || !r.node.ts.Equal(at(15)) {
		t.Errorf("node %+v", r.node)
	}
	c, ok := r.containers[podRef{"default", "busy"}]["loop"]
	if !ok || c.cpuNanos != 2_500_000_000 || c.workingSet != 2048 || !c.ts.Equal(at(15)) || !c.start.Equal(at(-100)) {
		t.Errorf("container %+v %v", c, ok)
	}
	if _, err := parseResource(strings.NewReader("node_cpu_usage_seconds_total{"), at(0)); err == nil {
		t.Error("a broken answer parsed")
	}
	noNode, _ := parseResource(strings.NewReader("resource_scrape_error 1\n"), at(0))
	if noNode.hasNode || len(noNode.containers) != 0 {
		t.Errorf("an answer without samples gave %+v", noNode)
	}
}

// BenchmarkStoreUpdate replaces the store with a scrape of 1,000 pods of
// two containers each (the allocation per round is the store's steady
// memory, held until the next round).
func BenchmarkStoreUpdate(b *testing.B) {
	s := newStore(15 * time.Second)
	batches := [2]*batch{newBatch(), newBatch()}
	for r, bt := range batches {
		ts := at(15 * r)
		for i := range 1000 {
			bt.pods[podRef{"default", "pod-" + strconv.Itoa(i)}] = map[string]containerPoint{
				"app":  {point: point{ts: ts, cpuNanos: uint64(r) * 1e9}, start: at(-100)},
				"side": {point: point{ts: ts, cpuNanos: uint64(r) * 1e9}, start: at(-100)},
			}
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.update(batches[i%2])
		i++
	}
}
