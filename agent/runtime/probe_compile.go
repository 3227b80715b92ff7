package runtime

import (
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/images/archive"
	"github.com/containernetworking/cni/libcni"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"github.com/google/go-containerregistry/pkg/registry"
)

var _ = containerd.New
var _ = cio.NewCreator
var _ = oci.WithProcessArgs
var _ = docker.NewResolver
var _ = archive.ImportIndex
var _ = libcni.NewCNIConfig
var _ = remotecommand.ServeExec
var _ = registry.New
