package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/apparmor"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// ProfileType says which seccomp or AppArmor profile confines a container.
type ProfileType int

const (
	// ProfileUnconfined: no profile (the zero value).
	ProfileUnconfined ProfileType = iota
	// ProfileRuntimeDefault: containerd's default profile.
	ProfileRuntimeDefault
	// ProfileLocalhost: a profile of the node (a seccomp JSON file, or the
	// name of a loaded AppArmor profile).
	ProfileLocalhost
)

// SecurityProfile is a seccomp or AppArmor profile choice.
type SecurityProfile struct {
	Type ProfileType
	// Localhost is the seccomp profile's file or the AppArmor profile's
	// name, for ProfileLocalhost.
	Localhost string
}

// DefaultAppArmorProfile is the name containerd's CRI plugin gives its
// default AppArmor profile; the agent loads the same one for RuntimeDefault.
const DefaultAppArmorProfile = "cri-containerd.apparmor.d"

// securityOpts confines the container with its seccomp and AppArmor
// profiles. They must come after the capabilities are set: the default
// seccomp profile allows the syscalls the capabilities need. As in
// containerd's CRI plugin, a privileged container gets no seccomp profile
// and no default AppArmor profile, but a Localhost AppArmor profile it
// asks for by name.
func securityOpts(spec ContainerSpec) []oci.SpecOpts {
	var opts []oci.SpecOpts
	switch {
	case spec.Privileged:
	case spec.Seccomp.Type == ProfileRuntimeDefault:
		opts = append(opts, seccomp.WithDefaultProfile())
	case spec.Seccomp.Type == ProfileLocalhost:
		opts = append(opts, withSeccompFile(spec.Seccomp.Localhost))
	}
	switch {
	case spec.AppArmor.Type == ProfileRuntimeDefault && !spec.Privileged:
		opts = append(opts, apparmor.WithDefaultProfile(DefaultAppArmorProfile))
	case spec.AppArmor.Type == ProfileLocalhost:
		opts = append(opts, withLoadedAppArmor(appArmorProfilesFile, spec.AppArmor.Localhost))
	}
	return opts
}

// appArmorProfilesFile lists the kernel's loaded AppArmor profiles.
const appArmorProfilesFile = "/sys/kernel/security/apparmor/profiles"

// withLoadedAppArmor confines the process with a profile the node has
// loaded, refusing one it has not (runc would fail less clearly).
func withLoadedAppArmor(profiles, name string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		b, err := os.ReadFile(profiles)
		if err != nil {
			return fmt.Errorf("appArmorProfile.localhostProfile %q: reading the loaded profiles: %w", name, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+" (") {
				s.Process.ApparmorProfile = name
				return nil
			}
		}
		return fmt.Errorf("appArmorProfile.localhostProfile: apparmor profile not found %s (load it on the node with apparmor_parser)", name)
	}
}

// withSeccompFile loads a Localhost seccomp profile, saying which file and
// where such files belong when it cannot.
func withSeccompFile(path string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("seccompProfile.localhostProfile: cannot read the seccomp profile %s (profiles live under the agent's --seccomp-profile-root): %w", path, err)
		}
		var p specs.LinuxSeccomp
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("seccompProfile.localhostProfile: %s is not an OCI seccomp profile (JSON): %w", path, err)
		}
		s.Linux.Seccomp = &p
		return nil
	}
}

// ImageUser is the user an image runs as, as the CRI reports it: a numeric
// UID when the image's user starts with one ("1000" or "1000:1000"), else
// the user name; neither when the image names no user.
func (r *Runtime) ImageUser(ctx context.Context, ref string) (uid *int64, name string, err error) {
	ctx = r.ns(ctx)
	img, err := r.client.GetImage(ctx, ref)
	if err != nil {
		return nil, "", fmt.Errorf("runtime: image %s: %w", ref, err)
	}
	return imageUser(ctx, img)
}

func imageUser(ctx context.Context, img containerd.Image) (*int64, string, error) {
	cfg, err := imageConfig(ctx, img)
	if err != nil {
		return nil, "", err
	}
	uid, name := ParseImageUser(cfg.User)
	return uid, name, nil
}

// ParseImageUser splits an image's user ("name", "uid", "uid:gid",
// "name:group") into a numeric UID or a name, as containerd's CRI does.
func ParseImageUser(user string) (*int64, string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &n, ""
	}
	return nil, user
}
