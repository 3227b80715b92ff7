// Package localstorage gives plugins the node-local volume vocabulary the
// Keelson agents speak (the local-path provisioner's name, the Node
// annotation holding the agent's storage directory, the kubelet-API calls
// that make, resize and remove a volume's directory). It re-exports internal/localstorage,
// which the agents use, so both sides can never disagree.
package localstorage

import (
	"github.com/keelson/keelson/internal/localstorage"
)

// Names and annotations; see internal/localstorage.
const (
	Provisioner          = localstorage.Provisioner
	StorageDirAnnotation = localstorage.StorageDirAnnotation
	NodeAnnotation       = localstorage.NodeAnnotation
	Subresource          = localstorage.Subresource

	AnnCapacityEnforced    = localstorage.AnnCapacityEnforced
	AnnCapacityEnforcement = localstorage.AnnCapacityEnforcement
)

// VolumeRequest and VolumeState are the body and answer of a PUT to
// VolumeAPIPath; see internal/localstorage.
type (
	VolumeRequest = localstorage.VolumeRequest
	VolumeState   = localstorage.VolumeState
)

// VolumeDir is the directory of volume name under a node's storage
// directory.
func VolumeDir(storageDir, name string) string { return localstorage.VolumeDir(storageDir, name) }

// VolumeAPIPath is the kubelet-API path of volume name on its node: PUT
// makes or resizes its directory, DELETE removes it.
func VolumeAPIPath(name string) string { return localstorage.VolumeAPIPath(name) }

// CheckVolumeName refuses what is not a PersistentVolume name.
func CheckVolumeName(name string) error { return localstorage.CheckVolumeName(name) }
