package runtime

import (
	"context"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	"github.com/distribution/reference"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// ContainerSpec describes a container in runtime terms.
type ContainerSpec struct {
	// Image is the reference of an image already present (see EnsureImage).
	Image string
	// Labels are kept on the container; List matches on them.
	Labels map[string]string
	// ShimGroup, when set, makes every container of the group share one
	// runc shim process (containerd's io.containerd.runc.v2.group
	// annotation), as CRI does for the containers of one pod sandbox: the
	// second container of a group starts no shim of its own. The shim
	// exits once the group has no task left; a container must not join a
	// group whose shim may be exiting.
	ShimGroup string
	// Command replaces the image's entrypoint and Args its cmd, with
	// Kubernetes' rule: a Command without Args drops the image's cmd.
	Command []string
	Args    []string
	// Env entries (NAME=value) are added to the image's, replacing those
	// of the same name.
	Env []string
	// WorkingDir replaces the image's when set.
	WorkingDir string
	// User replaces the image's user when set.
	User *User
	// Hostname of the container's UTS namespace.
	Hostname string
	// NetNS is the path of the network namespace to join; empty shares the
	// host's network.
	NetNS string
	// PIDNS, when set, is the path of a PID namespace to join (another
	// container's, for an ephemeral container that targets it); empty gives
	// the container a PID namespace of its own.
	PIDNS  string
	Mounts []Mount
	// TTY gives the process a terminal; Stdin keeps its standard input open.
	TTY   bool
	Stdin bool

	Privileged      bool
	CapAdd, CapDrop []string
	ReadOnlyRootfs  bool
	NoNewPrivileges bool
	Sysctls         map[string]string
	// Seccomp and AppArmor confine an unprivileged container; the zero
	// value is Unconfined.
	Seccomp  SecurityProfile
	AppArmor SecurityProfile

	// Resources are the container's cgroup settings.
	Resources
	// OOMScoreAdj is the process's oom_score_adj; nil inherits the shim's.
	OOMScoreAdj *int
	// CgroupsPath is the container's cgroup (cgroupfs path).
	CgroupsPath string
}

// Resources are a container's cgroup settings, as set when it is created
// and changed on the running container by UpdateResources; zero values
// leave the runtime's defaults (or, on an update, the current value).
type Resources struct {
	CPUShares   uint64
	CPUQuota    int64
	CPUPeriod   uint64
	MemoryLimit int64
}

// apply writes r into lr. Create and UpdateResources both go through it,
// so a resized container's cgroup holds what a new one would.
func (r Resources) apply(lr *specs.LinuxResources) {
	if r.CPUShares > 0 || r.CPUQuota > 0 {
		if lr.CPU == nil {
			lr.CPU = &specs.LinuxCPU{}
		}
	}
	if r.CPUShares > 0 {
		shares := r.CPUShares
		lr.CPU.Shares = &shares
	}
	if r.CPUQuota > 0 {
		quota, period := r.CPUQuota, r.CPUPeriod
		lr.CPU.Quota, lr.CPU.Period = &quota, &period
	}
	if r.MemoryLimit > 0 {
		if lr.Memory == nil {
			lr.Memory = &specs.LinuxMemory{}
		}
		limit := r.MemoryLimit
		lr.Memory.Limit = &limit
	}
}

// linux is r as the OCI runtime's resources, for a task update.
func (r Resources) linux() *specs.LinuxResources {
	lr := &specs.LinuxResources{}
	r.apply(lr)
	return lr
}

// withResources applies r to a new container's spec.
func withResources(r Resources) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		r.apply(s.Linux.Resources)
		return nil
	}
}

// User is the identity a container's process runs as.
type User struct {
	UID, GID       uint32
	HasGID         bool // else the primary group of UID in the image's /etc/passwd
	AdditionalGIDs []uint32
}

// Mount is a bind mount into the container.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// Type is "bind" unless set (e.g. "tmpfs").
	Type    string
	Options []string
}

// specOpts turns spec into containerd's OCI spec options, applied on top of
// containerd's default Linux spec and the image's configuration.
// shimGroupAnnotation is the OCI annotation containerd's runc v2 shim groups
// containers by (containerd >= 1.5).
const shimGroupAnnotation = "io.containerd.runc.v2.group"

func specOpts(img containerd.Image, spec ContainerSpec) []oci.SpecOpts {
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if spec.ShimGroup != "" {
		opts = append(opts, oci.WithAnnotations(map[string]string{shimGroupAnnotation: spec.ShimGroup}))
	}
	if len(spec.Command) > 0 || len(spec.Args) > 0 {
		opts = append(opts, withKubernetesArgs(img, spec.Command, spec.Args))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	if u := spec.User; u != nil {
		if u.HasGID {
			opts = append(opts, oci.WithUIDGID(u.UID, u.GID))
		} else {
			opts = append(opts, oci.WithUserID(u.UID))
		}
		if len(u.AdditionalGIDs) > 0 {
			opts = append(opts, withAdditionalGIDs(u.AdditionalGIDs))
		}
	}
	if spec.Hostname != "" {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	if spec.NetNS != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNS}))
	} else {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	}
	if spec.PIDNS != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: spec.PIDNS}))
	}
	// The container's own cgroup, read-only, as CRI mounts it: what runs
	// inside reads its limits there (a volume mounted at the same place
	// replaces it).
	opts = append(opts, withCgroupMount)
	if len(spec.Mounts) > 0 {
		opts = append(opts, withMounts(spec.Mounts))
	}
	if spec.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if spec.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices, withWritableSysfs, oci.WithWriteableCgroupfs)
	}
	if len(spec.CapAdd) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(capNames(spec.CapAdd)))
	}
	if len(spec.CapDrop) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(capNames(spec.CapDrop)))
	}
	opts = append(opts, securityOpts(spec)...)
	if spec.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if spec.NoNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if len(spec.Sysctls) > 0 {
		opts = append(opts, withSysctls(spec.Sysctls))
	}
	opts = append(opts, withResources(spec.Resources))
	if spec.OOMScoreAdj != nil {
		adj := *spec.OOMScoreAdj
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.OOMScoreAdj = &adj
			return nil
		})
	}
	if spec.CgroupsPath != "" {
		opts = append(opts, oci.WithCgroup(spec.CgroupsPath))
	}
	return opts
}

// withKubernetesArgs applies a Pod container's command and args to the
// image's entrypoint and cmd.
func withKubernetesArgs(img containerd.Image, command, args []string) oci.SpecOpts {
	return func(ctx context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		cfg, err := imageConfig(ctx, img)
		if err != nil {
			return err
		}
		s.Process.Args = ResolveArgs(cfg.Entrypoint, cfg.Cmd, command, args)
		return nil
	}
}

// ResolveArgs is Kubernetes' rule for a container's argv: command replaces
// the entrypoint, args replace the cmd, and a command without args drops the
// image's cmd.
func ResolveArgs(entrypoint, cmd, command, args []string) []string {
	switch {
	case len(command) > 0:
		return append(append([]string{}, command...), args...)
	case len(args) > 0:
		return append(append([]string{}, entrypoint...), args...)
	default:
		return append(append([]string{}, entrypoint...), cmd...)
	}
}

func withAdditionalGIDs(gids []uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, gids...)
		return nil
	}
}

func withMounts(mounts []Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, m := range mounts {
			// A Kubernetes mount replaces the default one at the same place
			// (/etc/hosts has none, but /dev/shm or /etc/resolv.conf may).
			kept := s.Mounts[:0]
			for _, d := range s.Mounts {
				if d.Destination != m.Destination {
					kept = append(kept, d)
				}
			}
			s.Mounts = kept
			typ, options := m.Type, m.Options
			if typ == "" {
				typ = "bind"
				options = append([]string{"rbind", "rprivate"}, options...)
			}
			if m.ReadOnly {
				options = append(options, "ro")
			} else {
				options = append(options, "rw")
			}
			s.Mounts = append(s.Mounts, specs.Mount{Source: m.Source, Destination: m.Destination, Type: typ, Options: options})
		}
		return nil
	}
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

// withCgroupMount mounts the container's cgroup at /sys/fs/cgroup.
func withCgroupMount(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	kept := s.Mounts[:0]
	for _, m := range s.Mounts {
		if m.Destination != "/sys/fs/cgroup" {
			kept = append(kept, m)
		}
	}
	s.Mounts = append(kept, specs.Mount{
		Source:      "cgroup",
		Destination: "/sys/fs/cgroup",
		Type:        "cgroup",
		Options:     []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
	})
	return nil
}

// withWritableSysfs gives a privileged container a read-write /sys, as
// Kubernetes runtimes do.
func withWritableSysfs(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	for i, m := range s.Mounts {
		if m.Destination == "/sys" {
			var opts []string
			for _, o := range m.Options {
				if o != "ro" {
					opts = append(opts, o)
				}
			}
			s.Mounts[i].Options = append(opts, "rw")
		}
	}
	return nil
}

// capNames turns Kubernetes capability names (NET_ADMIN, ALL) into the
// runtime's (CAP_NET_ADMIN).
func capNames(caps []string) []string {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		c = strings.ToUpper(c)
		if c == "ALL" {
			out = append(out, "ALL")
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

// imageRef is name@digest of an image, as container statuses report it.
func imageRef(img containerd.Image) string {
	digest := img.Target().Digest.String()
	named, err := reference.ParseNormalizedNamed(img.Name())
	if err != nil {
		return digest
	}
	return reference.TrimNamed(named).String() + "@" + digest
}
