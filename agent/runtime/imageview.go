package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sys/unix"
)

// Image views are read-only snapshots of an image's root filesystem mounted
// on the node, for image volumes: a View of the image's layer chain, as
// containerd's CRI makes one. Each owner (a pod, by UID) holds its views in a
// lease of its own, so containerd's garbage collector keeps them while the
// owner lives and RemoveImageViews can find every one of them later, after an
// agent restart too.
const (
	viewLeasePrefix = "keelson-image-views-"
	// viewKeyPrefix starts a view's snapshot key; the mount point follows,
	// so the key alone says where the view is mounted.
	viewKeyPrefix  = "keelson-image-view:"
	labelViewOwner = "keelson.io/image-view-owner"
)

func viewLease(owner string) string { return viewLeasePrefix + owner }

// MountImageView mounts a read-only view of the present image ref (a
// normalized reference) below dir, at dir/<chain ID>, and returns that path.
// It is idempotent: a view already mounted there is reused. An image whose
// content changed (a re-pull brought a new digest) gets a new view beside
// the old one, which containers started earlier keep using until the owner's
// views are removed.
func (r *Runtime) MountImageView(ctx context.Context, owner, ref, dir string) (string, error) {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("runtime: image %s: %w", ref, err)
	}
	// An image imported for another snapshotter is unpacked for ours; a
	// no-op when it already is.
	if err := img.Unpack(ctx, r.opts.Snapshotter); err != nil {
		return "", fmt.Errorf("runtime: unpacking image %s: %w", ref, err)
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return "", fmt.Errorf("runtime: layers of image %s: %w", ref, err)
	}
	chain := identity.ChainID(diffIDs)
	target := filepath.Join(dir, chain.Encoded())
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("runtime: image view of %s: %w", ref, err)
	}
	mounted, err := mountinfo.Mounted(target)
	if err != nil {
		return "", fmt.Errorf("runtime: image view of %s at %s: %w", ref, target, err)
	}
	if mounted {
		return target, nil
	}
	if _, err := r.client.LeasesService().Create(ctx, leases.WithID(viewLease(owner)),
		leases.WithLabels(map[string]string{labelViewOwner: owner})); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", fmt.Errorf("runtime: lease for the image views of %s: %w", owner, err)
	}
	ctx = leases.WithLease(ctx, viewLease(owner))
	sn := r.client.SnapshotService(r.opts.Snapshotter)
	key := viewKeyPrefix + target
	mounts, err := sn.View(ctx, key, chain.String(), snapshots.WithLabels(map[string]string{labelViewOwner: owner}))
	if errdefs.IsAlreadyExists(err) {
		// Left by an attempt that failed to mount, or by an agent that
		// stopped in between: the key names the chain, so it is the same view.
		mounts, err = sn.Mounts(ctx, key)
	}
	if err != nil {
		return "", fmt.Errorf("runtime: snapshot view of image %s: %w", ref, err)
	}
	if err := mount.All(readOnly(mounts), target); err != nil {
		return "", fmt.Errorf("runtime: mounting the view of image %s at %s: %w", ref, target, err)
	}
	r.log.Debug("image view mounted", "image", ref, "owner", owner, "path", target)
	return target, nil
}

// readOnly makes every mount of a view read-only at the mount itself: an
// overlay of lower layers only cannot be written anyway, but its mount would
// say rw.
func readOnly(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		m.Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "rw" || o == "ro" })
		m.Options = append(m.Options, "ro")
		out[i] = m
	}
	return out
}

// RemoveImageViews unmounts and removes every image view of owner, and its
// lease. Removing none is not an error.
func (r *Runtime) RemoveImageViews(ctx context.Context, owner string) error {
	ctx = r.ns(ctx)
	ls := r.client.LeasesService()
	lease := leases.Lease{ID: viewLease(owner)}
	res, err := ls.ListResources(ctx, lease)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: image views of %s: %w", owner, err)
	}
	var errs []error
	kind := "snapshots/" + r.opts.Snapshotter
	for _, rs := range res {
		if rs.Type != kind || !strings.HasPrefix(rs.ID, viewKeyPrefix) {
			continue
		}
		target := strings.TrimPrefix(rs.ID, viewKeyPrefix)
		if err := mount.UnmountAll(target, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmounting the image view at %s: %w", target, err))
			continue
		}
		if err := r.client.SnapshotService(r.opts.Snapshotter).Remove(ctx, rs.ID); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing the image view at %s: %w", target, err))
			continue
		}
		if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("runtime: image views of %s: %w", owner, errors.Join(errs...))
	}
	if err := ls.Delete(ctx, lease); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: lease of the image views of %s: %w", owner, err)
	}
	return nil
}

// ImageViewOwners lists the owners that hold image views (their leases).
func (r *Runtime) ImageViewOwners(ctx context.Context) ([]string, error) {
	ctx = r.ns(ctx)
	list, err := r.client.LeasesService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("runtime: listing leases: %w", err)
	}
	var owners []string
	for _, l := range list {
		if owner, ok := strings.CutPrefix(l.ID, viewLeasePrefix); ok {
			owners = append(owners, owner)
		}
	}
	return owners, nil
}
