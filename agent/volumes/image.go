package volumes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
)

// ImageViews mounts read-only views of images' root filesystems on the
// node (agent/runtime, on containerd's snapshots) and removes them.
type ImageViews interface {
	// MountImageView mounts a view of the present image ref below dir for
	// owner and returns where.
	MountImageView(ctx context.Context, owner, ref, dir string) (string, error)
	// RemoveImageViews unmounts and removes every view of owner.
	RemoveImageViews(ctx context.Context, owner string) error
}

// ImageDir is where a pod's image volume is mounted: below it, one view
// per content of the image (a re-pull may bring new content while running
// containers keep the old).
func ImageDir(podDir, volume string) string {
	return filepath.Join(Dir(podDir), "kubernetes.io~image", volume)
}

// MountImage mounts a read-only view of image volume vol of pod, whose
// image ref (a normalized reference) the caller made present by the
// volume's pull policy. Setup leaves image volumes out: their image is
// pulled first, and a failed pull makes only the containers mounting the
// volume wait (ErrImagePull), as kubelet reports it, not the whole pod.
func (m *Manager) MountImage(ctx context.Context, pod *v1.Pod, podDir, vol, ref string) (Volume, error) {
	if m.images == nil {
		return Volume{}, errors.New("image volumes need a container runtime with snapshots; this agent has none")
	}
	path, err := m.images.MountImageView(ctx, string(pod.UID), ref, ImageDir(podDir, vol))
	if err != nil {
		return Volume{}, fmt.Errorf("image volume %q (image %s): %w", vol, ref, err)
	}
	return Volume{Path: path, ReadOnly: true, Image: true}, nil
}
