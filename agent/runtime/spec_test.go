package runtime

import (
	"context"
	"reflect"
	"testing"

	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// defaultSpec is containerd's default Linux spec with opts applied.
func defaultSpec(t *testing.T, opts ...oci.SpecOpts) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	c := &containers.Container{ID: "c"}
	s, err := oci.GenerateSpec(ctx, nil, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestResourcesSameAtCreateAndUpdate: a new container's cgroup settings
// and a resize's task update are one conversion, and zero leaves a setting
// out (the runtime's default at create, unchanged on an update).
func TestResourcesSameAtCreateAndUpdate(t *testing.T) {
	shares, quota, period, limit := uint64(25), int64(3500), uint64(100000), int64(50<<20)
	cases := []struct {
		name string
		r    Resources
		want specs.LinuxResources
	}{
		{"shares only", Resources{CPUShares: 2}, specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr(uint64(2))}}},
		{"all", Resources{CPUShares: shares, CPUQuota: quota, CPUPeriod: period, MemoryLimit: limit},
			specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period}, Memory: &specs.LinuxMemory{Limit: &limit}}},
		{"memory only", Resources{MemoryLimit: limit}, specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}},
	}
	for _, tc := range cases {
		if got := tc.r.linux(); !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s: update %+v, want %+v", tc.name, got, tc.want)
		}
		s := defaultSpec(t, withResources(tc.r))
		got := s.Linux.Resources
		if !reflect.DeepEqual(got.CPU, tc.want.CPU) || !reflect.DeepEqual(got.Memory, tc.want.Memory) {
			t.Errorf("%s: create cpu %+v memory %+v, want %+v %+v", tc.name, got.CPU, got.Memory, tc.want.CPU, tc.want.Memory)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestCgroupMount: every container sees its cgroup read-only at
// /sys/fs/cgroup as under CRI (the resize specs read their limits there),
// a privileged one read-write, and a volume mounted there replaces it.
func TestCgroupMount(t *testing.T) {
	cgroupMounts := func(s *oci.Spec) []specs.Mount {
		var out []specs.Mount
		for _, m := range s.Mounts {
			if m.Destination == "/sys/fs/cgroup" {
				out = append(out, m)
			}
		}
		return out
	}
	hasOption := func(m specs.Mount, o string) bool {
		for _, x := range m.Options {
			if x == o {
				return true
			}
		}
		return false
	}
	ms := cgroupMounts(defaultSpec(t, withCgroupMount))
	if len(ms) != 1 || ms[0].Type != "cgroup" || !hasOption(ms[0], "ro") {
		t.Errorf("cgroup mounts %+v, want one read-only cgroup mount", ms)
	}
	ms = cgroupMounts(defaultSpec(t, withCgroupMount, oci.WithWriteableCgroupfs))
	if len(ms) != 1 || !hasOption(ms[0], "rw") || hasOption(ms[0], "ro") {
		t.Errorf("privileged cgroup mounts %+v, want it read-write", ms)
	}
	ms = cgroupMounts(defaultSpec(t, withCgroupMount, withMounts([]Mount{{Source: "/host/cg", Destination: "/sys/fs/cgroup"}})))
	if len(ms) != 1 || ms[0].Source != "/host/cg" {
		t.Errorf("cgroup mounts %+v, want the volume only", ms)
	}
}
