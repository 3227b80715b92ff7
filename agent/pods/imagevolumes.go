package pods

import (
	"context"
	"fmt"
	"time"

	"github.com/keelson/keelson/agent/volumes"
	v1 "k8s.io/api/core/v1"
)

// imageVolume is an image volume as the latest sync that starts containers
// left it: mounted, or why the containers mounting it wait.
type imageVolume struct {
	image   string // the reference as the pod names it
	vol     volumes.Volume
	waiting *v1.ContainerStateWaiting
	retry   time.Duration
}

// imageVolumeMountFailed starts the message of a view that could not be
// mounted, as the CRI's error for it does.
const imageVolumeMountFailed = "ImageVolumeMountFailed"

// ensureImageVolumes readies every image volume of the pod before a sync
// starts containers, as kubelet does: it pulls each volume's image by the
// volume's pull policy (with the pod's pull secrets, the registry mirrors
// and the pod's pull back-off, as for a container's image) and mounts a
// read-only view of it. A volume whose image cannot be had is kept with why,
// so that only the containers mounting it wait; nil when the pod has no
// image volume.
func (m *Manager) ensureImageVolumes(ctx context.Context, pod *v1.Pod, sb *sandbox) map[string]imageVolume {
	var out map[string]imageVolume
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if v.Image == nil {
			continue
		}
		if out == nil {
			out = map[string]imageVolume{}
		}
		iv := imageVolume{image: v.Image.Reference}
		ref, waiting, retry := m.pullImage(ctx, pod, v.Image.Reference, v.Image.PullPolicy)
		if waiting != nil {
			iv.waiting, iv.retry = waiting, retry
		} else if vol, err := m.opts.Volumes.MountImage(ctx, pod, sb.dir, v.Name, ref); err != nil {
			m.log.Warn("mounting an image volume", "pod", podKey(pod), "volume", v.Name, "err", err)
			iv.waiting = &v1.ContainerStateWaiting{Reason: reasonCreateContainerError, Message: imageVolumeMountFailed + ": " + err.Error()}
			iv.retry = retryInterval * 5
		} else {
			iv.vol = vol
		}
		out[v.Name] = iv
	}
	return out
}

// imageVolumesWait says why container c waits for the image volumes it
// mounts, if it does, and records a warning for each volume that failed,
// naming it and its image. As in kubelet, the last failed volume gives the
// container's reason (ErrImagePull, ImagePullBackOff, ...) and message.
func (m *Manager) imageVolumesWait(pod *v1.Pod, c *v1.Container, images map[string]imageVolume) (*v1.ContainerStateWaiting, time.Duration) {
	var waiting *v1.ContainerStateWaiting
	var retry time.Duration
	seen := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		iv, ok := images[vm.Name]
		if !ok || iv.waiting == nil || seen[vm.Name] {
			continue
		}
		seen[vm.Name] = true
		m.event(pod, v1.EventTypeWarning, "Failed", "Error: image volume %q (image %q) of container %s: %s", vm.Name, iv.image, c.Name, iv.waiting.Message)
		waiting, retry = iv.waiting, iv.retry
	}
	return waiting, retry
}

// imageVolumeMount returns the mounted view of image volume name, if the
// pod has one and it is ready.
func imageVolumeMount(images map[string]imageVolume, name string) (volumes.Volume, bool) {
	iv, ok := images[name]
	if !ok || iv.waiting != nil {
		return volumes.Volume{}, false
	}
	return iv.vol, true
}

// createError is a failure the container runtime would report when it
// creates the container (CreateContainerError): an image volume's subPath
// that the image lacks.
type createError struct{ msg string }

func (e createError) Error() string { return e.msg }

func createErrorf(format string, args ...any) error { return createError{fmt.Sprintf(format, args...)} }
