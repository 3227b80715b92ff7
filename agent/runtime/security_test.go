package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
)

// applySecurity builds containerd's default Linux spec and applies the
// container's capabilities and profiles as specOpts orders them.
func applySecurity(t *testing.T, spec ContainerSpec) (*oci.Spec, error) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	c := &containers.Container{ID: "c"}
	s, err := oci.GenerateSpec(ctx, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	var opts []oci.SpecOpts
	if spec.Privileged {
		opts = append(opts, oci.WithPrivileged)
	}
	opts = append(opts, securityOpts(spec)...)
	for _, o := range opts {
		if err := o(ctx, nil, c, s); err != nil {
			return s, err
		}
	}
	return s, nil
}

func TestSeccompSpec(t *testing.T) {
	s, err := applySecurity(t, ContainerSpec{})
	if err != nil || s.Linux.Seccomp != nil {
		t.Fatalf("Unconfined: seccomp %+v, %v", s.Linux.Seccomp, err)
	}
	s, err = applySecurity(t, ContainerSpec{Seccomp: SecurityProfile{Type: ProfileRuntimeDefault}})
	if err != nil || s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) == 0 || s.Linux.Seccomp.DefaultAction != "SCMP_ACT_ERRNO" {
		t.Fatalf("RuntimeDefault: seccomp %+v, %v", s.Linux.Seccomp, err)
	}
	s, err = applySecurity(t, ContainerSpec{Privileged: true, Seccomp: SecurityProfile{Type: ProfileRuntimeDefault}})
	if err != nil || s.Linux.Seccomp != nil {
		t.Fatalf("privileged: seccomp %+v, %v", s.Linux.Seccomp, err)
	}

	dir := t.TempDir()
	profile := filepath.Join(dir, "audit.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_LOG"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = applySecurity(t, ContainerSpec{Seccomp: SecurityProfile{Type: ProfileLocalhost, Localhost: profile}})
	if err != nil || s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != "SCMP_ACT_LOG" {
		t.Fatalf("Localhost: seccomp %+v, %v", s.Linux.Seccomp, err)
	}
	missing := filepath.Join(dir, "missing.json")
	_, err = applySecurity(t, ContainerSpec{Seccomp: SecurityProfile{Type: ProfileLocalhost, Localhost: missing}})
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "--seccomp-profile-root") {
		t.Fatalf("missing Localhost profile: %v, want an error naming the file and --seccomp-profile-root", err)
	}
	if err := os.WriteFile(profile, []byte(`not json`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = applySecurity(t, ContainerSpec{Seccomp: SecurityProfile{Type: ProfileLocalhost, Localhost: profile}}); err == nil || !strings.Contains(err.Error(), "not an OCI seccomp profile") {
		t.Fatalf("bad Localhost profile: %v", err)
	}
}

func TestAppArmorSpec(t *testing.T) {
	s, err := applySecurity(t, ContainerSpec{})
	if err != nil || s.Process.ApparmorProfile != "" {
		t.Fatalf("Unconfined: %q, %v", s.Process.ApparmorProfile, err)
	}
	// A privileged container gets no default profile (which would load
	// one into the kernel); nothing is applied.
	s, err = applySecurity(t, ContainerSpec{Privileged: true, AppArmor: SecurityProfile{Type: ProfileRuntimeDefault}})
	if err != nil || s.Process.ApparmorProfile != "" {
		t.Fatalf("privileged RuntimeDefault: %q, %v", s.Process.ApparmorProfile, err)
	}

	profiles := filepath.Join(t.TempDir(), "profiles")
	if err := os.WriteFile(profiles, []byte("cri-containerd.apparmor.d (enforce)\nk8s-deny-write (enforce)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	for _, tc := range []struct {
		name, want, wantErr string
	}{
		{name: "k8s-deny-write", want: "k8s-deny-write"},
		{name: "k8s-deny", wantErr: "apparmor profile not found k8s-deny"},
	} {
		s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		err = withLoadedAppArmor(profiles, tc.name)(ctx, nil, nil, s)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("%s: %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || s.Process.ApparmorProfile != tc.want {
			t.Fatalf("%s: %q, %v", tc.name, s.Process.ApparmorProfile, err)
		}
	}
	if _, err := os.Stat(appArmorProfilesFile); err != nil {
		// Without AppArmor in the kernel, naming a profile fails clearly.
		_, err := applySecurity(t, ContainerSpec{AppArmor: SecurityProfile{Type: ProfileLocalhost, Localhost: "x"}})
		if err == nil || !strings.Contains(err.Error(), "appArmorProfile.localhostProfile") {
			t.Fatalf("Localhost without AppArmor: %v", err)
		}
	}
}
