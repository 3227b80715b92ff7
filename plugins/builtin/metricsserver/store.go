package metricsserver

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// point is one read of a cumulative CPU time and the memory working set.
type point struct {
	ts         time.Time
	cpuNanos   uint64 // cumulative core-nanoseconds
	workingSet uint64 // bytes
}

// containerPoint is a container's read with its start time, which tells
// a restart (a new start time) from a counter that went on.
type containerPoint struct {
	point
	start time.Time
}

// podRef names a pod.
type podRef struct{ namespace, name string }

// batch is what one scrape of every node read: each node's point and each
// running container's, by pod and container name.
type batch struct {
	nodes map[string]point
	pods  map[podRef]map[string]containerPoint
}

func newBatch() *batch {
	return &batch{nodes: map[string]point{}, pods: map[podRef]map[string]containerPoint{}}
}

// series holds the two latest reads of one thing, from which the usage
// over the window between them is computed.
type series struct{ prev, last point }

// usage is a computed CPU rate and memory over a window ending at ts.
type usage struct {
	ts        time.Time
	window    time.Duration
	nanoCores uint64
	memory    uint64
}

// rate is the usage between prev and last, or false when there are not
// two ordered reads of a counter that went on.
func (s series) rate() (usage, bool) {
	if s.prev.ts.IsZero() || !s.last.ts.After(s.prev.ts) || s.last.cpuNanos < s.prev.cpuNanos {
		return usage{}, false
	}
	w := s.last.ts.Sub(s.prev.ts)
	cores := float64(s.last.cpuNanos-s.prev.cpuNanos) / w.Seconds()
	return usage{ts: s.last.ts, window: w, nanoCores: uint64(cores), memory: s.last.workingSet}, true
}

// next is s after a new read p: the last read becomes the previous one,
// unless the counter went back (a restart), which starts over.
func (s series) next(p point) series {
	switch {
	case s.last.ts.IsZero() || p.cpuNanos < s.last.cpuNanos:
		return series{last: p}
	case !p.ts.After(s.last.ts):
		return s // the same read again
	}
	return series{prev: s.last, last: p}
}

type containerSeries struct {
	series
	start time.Time
}

// store keeps, as metrics-server does, the two latest reads of every node
// and container seen in the latest scrape; what the latest scrape did not
// see is gone. It is safe for concurrent use: the scraper writes, the API
// reads.
type store struct {
	// resolution is the scrape period: a container that started less
	// than that before its first read is new.
	resolution time.Duration
	mu         sync.RWMutex
	nodes      map[string]series
	pods       map[podRef]map[string]containerSeries
}

func newStore(resolution time.Duration) *store {
	return &store{resolution: resolution, nodes: map[string]series{}, pods: map[podRef]map[string]containerSeries{}}
}

// update replaces the store's content with b's reads, each following its
// previous series.
func (s *store) update(b *batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nodes := make(map[string]series, len(b.nodes))
	for name, p := range b.nodes {
		nodes[name] = s.nodes[name].next(p)
	}
	pods := make(map[podRef]map[string]containerSeries, len(b.pods))
	for ref, cs := range b.pods {
		old := s.pods[ref]
		out := make(map[string]containerSeries, len(cs))
		for name, p := range cs {
			out[name] = old[name].follow(p, s.resolution)
		}
		pods[ref] = out
	}
	s.nodes, s.pods = nodes, pods
}

// follow is a container's series after a new read. A container first read
// (or restarted) less than a resolution after it started counts from its
// start with no CPU used, so a new container has usage after one read,
// as metrics-server reports it.
func (c containerSeries) follow(p containerPoint, resolution time.Duration) containerSeries {
	if c.last.ts.IsZero() || !p.start.Equal(c.start) {
		out := containerSeries{series: series{last: p.point}, start: p.start}
		if !p.start.IsZero() && p.start.Before(p.ts) && p.ts.Sub(p.start) < resolution {
			out.prev = point{ts: p.start}
		}
		return out
	}
	return containerSeries{series: c.next(p.point), start: c.start}
}

// node is a node's usage, or false if there is none yet.
func (s *store) node(name string) (usage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodes[name].rate()
}

// containerUsage is one container's usage in a pod.
type containerUsage struct {
	name string
	usage
}

// pod is the usage of a pod's containers, or false unless every container
// the latest scrape saw has one (a pod half measured is not reported).
// The pod's time is its latest container read, its window the longest.
func (s *store) pod(ref podRef) (usage, []containerUsage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cs := s.pods[ref]
	if len(cs) == 0 {
		return usage{}, nil, false
	}
	var pod usage
	out := make([]containerUsage, 0, len(cs))
	for name, c := range cs {
		u, ok := c.rate()
		if !ok {
			return usage{}, nil, false
		}
		out = append(out, containerUsage{name: name, usage: u})
		if u.ts.After(pod.ts) {
			pod.ts = u.ts
		}
		pod.window = max(pod.window, u.window)
	}
	slices.SortFunc(out, func(a, b containerUsage) int { return strings.Compare(a.name, b.name) })
	return pod, out, true
}
