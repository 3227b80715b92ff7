package config

import (
	"fmt"
	"regexp"

	"k8s.io/component-helpers/node/util/sysctl"
)

// sysctlPattern is a sysctl name (dots or slashes between segments), or a
// prefix of one ending in *, as kubelet's --allowed-unsafe-sysctls takes.
var sysctlPattern = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*([a-z0-9][-_a-z0-9]*)?\*?$`)

// sysctlMaxLength is the longest sysctl name the API accepts.
const sysctlMaxLength = 253

// CheckSysctlPattern says why p cannot be allowed as an unsafe sysctl: it
// must be a sysctl name or a prefix ending in *, and namespaced by the
// kernel (a host-wide sysctl set from a pod would change the whole node).
func CheckSysctlPattern(p string) error {
	if len(p) > sysctlMaxLength || !sysctlPattern.MatchString(p) || p == "*" {
		return fmt.Errorf("%q is not a sysctl name or a prefix ending in * (such as kernel.msg* or net.core.somaxconn)", p)
	}
	if ns, _, _ := sysctl.GetNamespace(p); ns == sysctl.UnknownNamespace {
		return fmt.Errorf("%q is not known to be namespaced: a pod may set only kernel.shm*, kernel.msg*, kernel.sem, kernel.domainname, fs.mqueue.*, net.* and user.* sysctls", p)
	}
	return nil
}
