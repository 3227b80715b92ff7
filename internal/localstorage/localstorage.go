// Package localstorage is what the local-path provisioner (a plugin) and
// the node agents share about node-local volumes: the provisioner's name,
// how a node tells where its volumes live, where a volume's directory is,
// and the kubelet-API calls that make (with its capacity bound) and
// remove one. Plugins reach it through
// plugins/sdk/localstorage, which re-exports it.
//
// The directory of a provisioned volume is made by the agent of its node
// when a pod first mounts it, and removed by that agent when the
// provisioner asks (the volume was released with reclaim policy Delete):
// no helper pod ever runs a shell on the node.
package localstorage

import (
	"fmt"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// Provisioner is the provisioner name of the local-path StorageClass,
	// and the value of pv.kubernetes.io/provisioned-by on its volumes.
	Provisioner = "keelson.io/local-path"

	// StorageDirAnnotation on a Node is the agent's storage directory
	// (--storage-dir): a provisioned volume's directory is
	// VolumeDir(that directory, volume name). A node without it runs no
	// Keelson agent and cannot hold local-path volumes.
	StorageDirAnnotation = "keelson.io/storage-dir"

	// NodeAnnotation on a provisioned PersistentVolume names the node that
	// holds its directory (its node affinity says the same in labels).
	NodeAnnotation = "keelson.io/local-path-node"

	// Subresource is the node subresource (RBAC: nodes/storage) a client
	// must be allowed to update to make or resize a volume's directory
	// through the kubelet API, and to delete to remove it.
	Subresource = "storage"

	// apiPrefix is the kubelet-API path under which volumes are addressed.
	apiPrefix = "/storage/local-path/"
)

// VolumeDir is the directory of volume name under storageDir.
func VolumeDir(storageDir, name string) string { return filepath.Join(storageDir, name) }

// VolumeAPIPath is the kubelet-API path of volume name: PUT (a
// VolumeRequest) makes or resizes its directory, DELETE removes it.
func VolumeAPIPath(name string) string { return apiPrefix + name }

// VolumeFromAPIPath returns the volume a kubelet-API path names.
func VolumeFromAPIPath(path string) (string, bool) {
	return strings.CutPrefix(path, apiPrefix)
}

// IsAPIPath reports whether path is under the volumes' kubelet-API path.
func IsAPIPath(path string) bool { return strings.HasPrefix(path, strings.TrimSuffix(apiPrefix, "/")) }

// CheckVolumeName refuses what is not a PersistentVolume name: the name
// becomes a directory under the storage directory, so it must never hold
// a path separator or be "." or "..".
func CheckVolumeName(name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("%q is not a PersistentVolume name: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// Annotations a provisioned PersistentVolume carries about its capacity.
const (
	// AnnCapacityEnforced is "true" when writes past the volume's capacity
	// fail (EDQUOT) on its node, "false" when the volume may grow until
	// the node's disk is full.
	AnnCapacityEnforced = "keelson.io/capacity-enforced"
	// AnnCapacityEnforcement names the mechanism that enforces the
	// capacity (btrfs-qgroup, project-quota), or says why none does.
	AnnCapacityEnforcement = "keelson.io/capacity-enforcement"
)

// VolumeRequest is the body of a PUT to VolumeAPIPath(name): the agent
// makes the volume's directory if it is missing and bounds it to
// CapacityBytes where its filesystem can (a larger capacity raises the
// bound; the bound is never lowered by the provisioner, which only
// expands).
type VolumeRequest struct {
	CapacityBytes int64 `json:"capacityBytes"`
}

// VolumeState is the agent's answer to a VolumeRequest.
type VolumeState struct {
	// CapacityEnforced: writes past the capacity fail.
	CapacityEnforced bool `json:"capacityEnforced"`
	// Enforcement is the mechanism when enforced (btrfs-qgroup,
	// project-quota); Reason says why not otherwise.
	Enforcement string `json:"enforcement,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// Annotation is the AnnCapacityEnforcement value of the state.
func (s VolumeState) Annotation() string {
	if s.CapacityEnforced {
		return s.Enforcement
	}
	return s.Reason
}
