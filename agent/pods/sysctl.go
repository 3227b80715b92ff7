package pods

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/keelson/keelson/config"
	"golang.org/x/sys/unix"
	"k8s.io/component-helpers/node/util/sysctl"
)

// safeSysctls are kubelet's safe sysctls: namespaced, and without effect on
// other pods of the node. Some became namespaced in a given kernel (major,
// minor); older kernels leave them out, as kubelet does.
var safeSysctls = []struct {
	name         string
	major, minor int
}{
	{"kernel.shm_rmid_forced", 0, 0},
	{"net.ipv4.ip_local_port_range", 0, 0},
	{"net.ipv4.tcp_syncookies", 0, 0},
	{"net.ipv4.ping_group_range", 0, 0},
	{"net.ipv4.ip_unprivileged_port_start", 0, 0},
	{"net.ipv4.ip_local_reserved_ports", 3, 16},
	{"net.ipv4.tcp_keepalive_time", 4, 5},
	{"net.ipv4.tcp_fin_timeout", 4, 6},
	{"net.ipv4.tcp_keepalive_intvl", 4, 5},
	{"net.ipv4.tcp_keepalive_probes", 4, 5},
	{"net.ipv4.tcp_rmem", 4, 15},
	{"net.ipv4.tcp_wmem", 4, 15},
	{"net.ipv4.tcp_slow_start_after_idle", 4, 15},
	{"net.ipv4.tcp_notsent_lowat", 4, 6},
}

// SysctlAllowlist is the set of sysctls pods may set on this node: the safe
// ones plus the operator's unsafe ones (--allowed-unsafe-sysctls).
type SysctlAllowlist struct {
	sysctls  map[string]sysctl.Namespace
	prefixes map[string]sysctl.Namespace
}

// NewSysctlAllowlist allows the safe sysctls that the running kernel
// namespaces, and the unsafe patterns (a name, or a prefix ending in *).
func NewSysctlAllowlist(unsafePatterns []string) (*SysctlAllowlist, error) {
	return newSysctlAllowlist(unsafePatterns, kernelRelease())
}

func newSysctlAllowlist(unsafePatterns []string, release string) (*SysctlAllowlist, error) {
	major, minor := parseKernel(release)
	w := &SysctlAllowlist{sysctls: map[string]sysctl.Namespace{}, prefixes: map[string]sysctl.Namespace{}}
	for _, s := range safeSysctls {
		if major > s.major || major == s.major && minor >= s.minor {
			ns, name, _ := sysctl.GetNamespace(s.name)
			w.sysctls[name] = ns
		}
	}
	for _, p := range unsafePatterns {
		if err := config.CheckSysctlPattern(p); err != nil {
			return nil, fmt.Errorf("allowed unsafe sysctls (--allowed-unsafe-sysctls): %w", err)
		}
		ns, name, prefixed := sysctl.GetNamespace(p)
		if prefixed {
			w.prefixes[name] = ns
		} else {
			w.sysctls[name] = ns
		}
	}
	return w, nil
}

// check says why a pod may not set name. A sysctl of a namespace the pod
// shares with the host (hostNetwork, hostIPC, no user namespace) would set
// it for the whole node: refused whatever the list says.
func (w *SysctlAllowlist) check(name string, hostNet, hostIPC, hostUsers bool) error {
	name = sysctl.NormalizeName(name)
	ns, found := w.sysctls[name]
	if !found {
		for p, pns := range w.prefixes {
			if strings.HasPrefix(name, p) {
				ns, found = pns, true
				break
			}
		}
	}
	if !found {
		return fmt.Errorf("%q not allowlisted", name)
	}
	if ns == sysctl.IPCNamespace && hostIPC || ns == sysctl.NetNamespace && hostNet || ns == sysctl.UserNamespace && hostUsers {
		return fmt.Errorf("%q not allowed with host %s enabled", name, ns)
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// parseKernel reads "6.1.0-18-amd64" as 6, 1; an unreadable release as 0, 0
// (only the sysctls safe on every kernel are then allowed).
func parseKernel(release string) (int, int) {
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return 0, 0
	}
	major, err1 := strconv.Atoi(f[0])
	minor, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return major, minor
}
