// Package localstorage gives plugins the node-local volume vocabulary the
// Keelson agents speak (the local-path provisioner's name, the Node
// annotation holding the agent's storage directory, the kubelet-API call
// that removes a volume's directory). It re-exports internal/localstorage,
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
)

// VolumeDir is the directory of volume name under a node's storage
// directory.
func VolumeDir(storageDir, name string) string { return localstorage.VolumeDir(storageDir, name) }

// VolumeAPIPath is the kubelet-API path whose DELETE removes volume name's
// directory on its node.
func VolumeAPIPath(name string) string { return localstorage.VolumeAPIPath(name) }

// CheckVolumeName refuses what is not a PersistentVolume name.
func CheckVolumeName(name string) error { return localstorage.CheckVolumeName(name) }
