package node

import (
	"fmt"

	"github.com/keelson/keelson/config"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// threshold is an eviction threshold: a quantity, or a fraction of the
// capacity.
type threshold struct {
	quantity int64
	fraction float64
}

// of is the threshold in absolute terms for a capacity.
func (t threshold) of(capacity int64) int64 {
	if t.fraction > 0 {
		return int64(t.fraction * float64(capacity))
	}
	return t.quantity
}

type thresholds struct{ memory, nodefs, pid threshold }

func parseThresholds(m map[string]string) (thresholds, error) {
	var th thresholds
	for signal, v := range m {
		q, f, err := config.ParseThreshold(v)
		if err != nil {
			return th, fmt.Errorf("node: evictionHard %s: %w", signal, err)
		}
		t := threshold{quantity: q, fraction: f}
		switch signal {
		case config.SignalMemoryAvailable:
			th.memory = t
		case config.SignalNodeFSAvailable:
			th.nodefs = t
		case config.SignalPIDAvailable:
			th.pid = t
		default:
			return th, fmt.Errorf("node: evictionHard: unknown signal %q", signal)
		}
	}
	return th, nil
}

// measurements are the node's free resources now.
type measurements struct {
	memAvailable, memCapacity int64
	fsAvailable, fsCapacity   int64
	pidMax, pidUsed           int64
}

func measure(dataDir string) (measurements, error) {
	var m measurements
	mem, err := meminfo()
	if err != nil {
		return m, err
	}
	m.memAvailable, m.memCapacity = mem["MemAvailable"], mem["MemTotal"]
	d, err := statfs(dataDir)
	if err != nil {
		return m, err
	}
	m.fsAvailable, m.fsCapacity = d.available, d.capacity
	if m.pidMax, m.pidUsed, err = pids(); err != nil {
		return m, err
	}
	return m, nil
}

// conditions computes the node's conditions in kubelet's order, with its
// reasons and messages. Without measurements (measured false) the pressure
// conditions keep their previous status. Transition times move only when a
// status changes; heartbeats are set to now.
func conditions(m measurements, measured bool, th thresholds, runtimeReady, networkReady bool, old []v1.NodeCondition, now metav1.Time) []v1.NodeCondition {
	prev := map[v1.NodeConditionType]v1.NodeCondition{}
	for _, c := range old {
		prev[c.Type] = c
	}
	mk := func(t v1.NodeConditionType, status v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		c := v1.NodeCondition{Type: t, Status: status, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
		if p, ok := prev[t]; ok && p.Status == status && !p.LastTransitionTime.IsZero() {
			c.LastTransitionTime = p.LastTransitionTime
		}
		return c
	}
	pressure := func(t v1.NodeConditionType, under bool, yes, yesMsg, no, noMsg string) v1.NodeCondition {
		if !measured {
			if p, ok := prev[t]; ok {
				p.LastHeartbeatTime = now
				return p
			}
		}
		if under {
			return mk(t, v1.ConditionTrue, yes, yesMsg)
		}
		return mk(t, v1.ConditionFalse, no, noMsg)
	}
	out := []v1.NodeCondition{
		pressure(v1.NodeMemoryPressure, m.memAvailable < th.memory.of(m.memCapacity),
			"KubeletHasInsufficientMemory", "kubelet has insufficient memory available",
			"KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		pressure(v1.NodeDiskPressure, m.fsAvailable < th.nodefs.of(m.fsCapacity),
			"KubeletHasDiskPressure", "kubelet has disk pressure",
			"KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		pressure(v1.NodePIDPressure, m.pidMax-m.pidUsed < th.pid.of(m.pidMax),
			"KubeletHasInsufficientPID", "kubelet has insufficient PID available",
			"KubeletHasSufficientPID", "kubelet has sufficient PID available"),
	}
	switch {
	case !runtimeReady:
		out = append(out, mk(v1.NodeReady, v1.ConditionFalse, "KubeletNotReady", "container runtime is down"))
	case !networkReady:
		out = append(out, mk(v1.NodeReady, v1.ConditionFalse, "KubeletNotReady",
			"container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:the node has no pod CIDR yet"))
	default:
		out = append(out, mk(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"))
	}
	return out
}
