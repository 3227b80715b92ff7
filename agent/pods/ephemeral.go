package pods

import (
	"context"
	"fmt"

	"github.com/keelson/keelson/agent/downward"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
)

// findContainer finds a container of the pod by name, whether regular,
// init or ephemeral (an ephemeral container has a container's fields).
func findContainer(pod *v1.Pod, name string) *v1.Container {
	if c := downward.Container(pod, name); c != nil {
		return c
	}
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			return (*v1.Container)(&pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		}
	}
	return nil
}

// ephemeralTarget is the container whose namespaces an ephemeral container
// shares (targetContainerName), empty when it targets none.
func ephemeralTarget(pod *v1.Pod, name string) string {
	for _, ec := range pod.Spec.EphemeralContainers {
		if ec.Name == name {
			return ec.TargetContainerName
		}
	}
	return ""
}

// targetPIDNamespace is the PID namespace an ephemeral container joins: its
// target's running process's, so that it sees the target's processes as
// kubectl debug --target promises; empty without a target. A target that
// does not run is a configuration error the container waits on, as in
// kubelet.
func (m *Manager) targetPIDNamespace(ctx context.Context, pod *v1.Pod, name string) (string, error) {
	target := ephemeralTarget(pod, name)
	if target == "" {
		return "", nil
	}
	list, err := m.rt.List(ctx, map[string]string{labelPodUID: string(pod.UID), labelContainerName: target})
	if err != nil {
		return "", err
	}
	sortAttempts(list)
	switch {
	case len(list) == 0:
		return "", configErrorf("unable to find target container %s", target)
	case list[0].State != runtime.StateRunning || list[0].Pid == 0:
		return "", configErrorf("target container %s is not running", target)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", list[0].Pid), nil
}
