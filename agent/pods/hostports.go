package pods

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// kubelet's NodePorts admission: a pod whose host port another active pod
// of the node holds is refused with this reason and message.
const (
	reasonNodePorts = "NodePorts"
	msgNodePorts    = "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
)

const anyHostIP = "0.0.0.0"

type hostPort struct {
	ip       string
	protocol v1.Protocol
	port     int32
}

// clashes: binding p and q at once is impossible. The wildcard address
// clashes with every address of the same protocol and port.
func (p hostPort) clashes(q hostPort) bool {
	return p.port == q.port && p.protocol == q.protocol &&
		(p.ip == q.ip || p.ip == anyHostIP || q.ip == anyHostIP)
}

// podHostPorts lists the host ports a pod binds for its whole life, as the
// scheduler counts them: its containers' and its sidecars' (restartable
// init containers); plain init containers' ports are not held.
func podHostPorts(pod *v1.Pod) []hostPort {
	var out []hostPort
	add := func(c *v1.Container) {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			hp := hostPort{ip: p.HostIP, protocol: p.Protocol, port: p.HostPort}
			if hp.ip == "" {
				hp.ip = anyHostIP
			}
			if hp.protocol == "" {
				hp.protocol = v1.ProtocolTCP
			}
			out = append(out, hp)
		}
	}
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	return out
}

// takeHostPorts admits a pod's host ports unless an active pod of the node
// holds one of them: a pod this agent admitted and has not finished, or a
// pod the API shows running (one started before this agent did, whose
// worker has not yet claimed its ports). Admissions are serialised, so two
// pods racing for a port cannot both win.
func (m *Manager) takeHostPorts(pod *v1.Pod) bool {
	want := podHostPorts(pod)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.hostPorts[pod.UID]; ok || len(want) == 0 {
		m.hostPorts[pod.UID] = want
		return true
	}
	for uid, other := range m.pods {
		if uid == pod.UID || other.Status.Phase == v1.PodSucceeded || other.Status.Phase == v1.PodFailed {
			continue
		}
		held, ok := m.hostPorts[uid]
		if !ok && other.Status.Phase == v1.PodRunning {
			held = podHostPorts(other)
		}
		if anyClash(want, held) {
			return false
		}
	}
	m.hostPorts[pod.UID] = want
	return true
}

func anyClash(a, b []hostPort) bool {
	for _, p := range a {
		for _, q := range b {
			if p.clashes(q) {
				return true
			}
		}
	}
	return false
}

// holdHostPorts records the ports of a pod that was running before this
// worker saw it; it is not admitted again.
func (m *Manager) holdHostPorts(pod *v1.Pod) {
	m.mu.Lock()
	m.hostPorts[pod.UID] = podHostPorts(pod)
	m.mu.Unlock()
}

// releaseHostPorts frees a pod's host ports once its containers stopped.
func (m *Manager) releaseHostPorts(uid types.UID) {
	m.mu.Lock()
	delete(m.hostPorts, uid)
	m.mu.Unlock()
}
