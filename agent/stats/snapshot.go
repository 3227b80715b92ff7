package stats

import "time"

// Snapshot is one read of the node's usage and that of its running pods
// and containers: what the summary API, /metrics/resource and
// /metrics/cadvisor are all rendered from, so one scrape reads each cgroup
// once.
type Snapshot struct {
	Node Usage
	Pods []PodUsage
}

// PodUsage is a pod's usage, the sum of its running containers'.
type PodUsage struct {
	Namespace, Name, UID string
	// StartTime is when the agent started the pod (zero: not yet).
	StartTime time.Time
	// Usage is meaningful only if Containers is not empty.
	Usage      Usage
	Containers []ContainerUsage
}

// ContainerUsage is a running container's usage.
type ContainerUsage struct {
	Name  string
	ID    string // the runtime's container ID
	Image string
	// Cgroup is the container's cgroup path (cadvisor's id label).
	Cgroup    string
	StartedAt time.Time
	Usage     Usage
}

// Add adds a container's usage to the pod's sum.
func (p *PodUsage) Add(c ContainerUsage) {
	p.Containers = append(p.Containers, c)
	if c.Usage.Time.After(p.Usage.Time) {
		p.Usage.Time = c.Usage.Time
	}
	p.Usage.CPUNanos += c.Usage.CPUNanos
	p.Usage.MemoryUsage += c.Usage.MemoryUsage
	p.Usage.WorkingSet += c.Usage.WorkingSet
	p.Usage.RSS += c.Usage.RSS
	p.Usage.MemoryFailcnt += c.Usage.MemoryFailcnt
}
