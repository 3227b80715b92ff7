package pods

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
)

// Security holds what the agent enforces of pods' security contexts beyond
// the container's identity and capabilities.
type Security struct {
	// SeccompProfileRoot is the directory of Localhost seccomp profiles.
	SeccompProfileRoot string
	// SeccompDefault confines containers that name no profile with the
	// runtime's default one.
	SeccompDefault bool
	// AppArmor says whether the kernel enforces AppArmor; without it a pod
	// that asks for a profile is refused.
	AppArmor bool
	// Sysctls are the sysctls pods may set; nil allows the safe set.
	Sysctls *SysctlAllowlist
}

// AppArmorEnabled reports whether the kernel has AppArmor on, as kubelet
// checks it.
func AppArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(b), "Y")
}

// Reasons of a pod refused at admission, kubelet's.
const (
	reasonSysctlForbidden = "SysctlForbidden"
	reasonAppArmor        = "AppArmor"
)

// admit decides whether the node may run the pod, as kubelet's admission
// handlers do for sysctls and AppArmor. A refused pod fails with the reason.
func (s *Security) admit(pod *v1.Pod) (reason, message string, ok bool) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		hostUsers := pod.Spec.HostUsers == nil || *pod.Spec.HostUsers
		for _, sc := range psc.Sysctls {
			if err := s.Sysctls.check(sc.Name, pod.Spec.HostNetwork, pod.Spec.HostIPC, hostUsers); err != nil {
				return reasonSysctlForbidden, fmt.Sprintf("forbidden sysctl: %v", err), false
			}
		}
	}
	if !s.AppArmor && appArmorRequired(pod) {
		return reasonAppArmor, "Cannot enforce AppArmor: AppArmor is not enabled on the host", false
	}
	return "", "", true
}

// appArmorRequired: some container of the pod asks for a profile other
// than Unconfined.
func appArmorRequired(pod *v1.Pod) bool {
	required := false
	eachContainer(pod, func(c *v1.Container) {
		if p := appArmorProfile(pod, c); p != nil && p.Type != v1.AppArmorProfileTypeUnconfined {
			required = true
		}
	})
	return required
}

func eachContainer(pod *v1.Pod, f func(c *v1.Container)) {
	for i := range pod.Spec.InitContainers {
		f(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		f(&pod.Spec.Containers[i])
	}
}

// appArmorProfile is the container's profile: its own, else the deprecated
// per-container annotation, else the pod's.
func appArmorProfile(pod *v1.Pod, c *v1.Container) *v1.AppArmorProfile {
	if c.SecurityContext != nil && c.SecurityContext.AppArmorProfile != nil {
		return c.SecurityContext.AppArmorProfile
	}
	if v, ok := pod.Annotations[v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix+c.Name]; ok {
		switch {
		case v == v1.DeprecatedAppArmorBetaProfileRuntimeDefault:
			return &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}
		case v == v1.DeprecatedAppArmorBetaProfileNameUnconfined:
			return &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeUnconfined}
		case strings.HasPrefix(v, v1.DeprecatedAppArmorBetaProfileNamePrefix):
			name := strings.TrimPrefix(v, v1.DeprecatedAppArmorBetaProfileNamePrefix)
			return &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeLocalhost, LocalhostProfile: &name}
		}
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		return psc.AppArmorProfile
	}
	return nil
}

// profiles sets the container's seccomp and AppArmor profiles: the
// container's field wins over the pod's, and a container naming no seccomp
// profile runs Unconfined unless SeccompDefault is on.
func (s *Security) profiles(spec *runtime.ContainerSpec, pod *v1.Pod, c *v1.Container) error {
	var scmp *v1.SeccompProfile
	if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
		scmp = c.SecurityContext.SeccompProfile
	} else if pod.Spec.SecurityContext != nil {
		scmp = pod.Spec.SecurityContext.SeccompProfile
	}
	switch {
	case scmp == nil && s.SeccompDefault, scmp != nil && scmp.Type == v1.SeccompProfileTypeRuntimeDefault:
		spec.Seccomp = runtime.SecurityProfile{Type: runtime.ProfileRuntimeDefault}
	case scmp != nil && scmp.Type == v1.SeccompProfileTypeLocalhost:
		if scmp.LocalhostProfile == nil || *scmp.LocalhostProfile == "" {
			return configErrorf("seccompProfile: localhostProfile must be set if seccompProfile type is Localhost")
		}
		// The API refuses absolute paths and "..", but the profile root
		// is the node's: never read outside it.
		p, err := securejoin.SecureJoin(s.SeccompProfileRoot, *scmp.LocalhostProfile)
		if err != nil {
			return configErrorf("seccompProfile.localhostProfile %q: %v", *scmp.LocalhostProfile, err)
		}
		spec.Seccomp = runtime.SecurityProfile{Type: runtime.ProfileLocalhost, Localhost: p}
	}
	if !s.AppArmor {
		return nil
	}
	// With no profile named, containerd's CRI confines a container with
	// its default profile: so does the agent.
	p := appArmorProfile(pod, c)
	if p == nil {
		p = &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}
	}
	switch p.Type {
	case v1.AppArmorProfileTypeRuntimeDefault:
		spec.AppArmor = runtime.SecurityProfile{Type: runtime.ProfileRuntimeDefault}
	case v1.AppArmorProfileTypeLocalhost:
		if p.LocalhostProfile == nil || strings.TrimSpace(*p.LocalhostProfile) == "" {
			return configErrorf("appArmorProfile: missing localhost apparmor profile name")
		}
		spec.AppArmor = runtime.SecurityProfile{Type: runtime.ProfileLocalhost, Localhost: *p.LocalhostProfile}
	}
	return nil
}

// effectiveRunAs is the container's runAsNonRoot and runAsUser, its own
// over the pod's.
func effectiveRunAs(pod *v1.Pod, c *v1.Container) (nonRoot *bool, user *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		nonRoot, user = psc.RunAsNonRoot, psc.RunAsUser
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			user = sc.RunAsUser
		}
	}
	return nonRoot, user
}

// verifyRunAsNonRoot refuses a container that must not run as root but
// would, or whose image user cannot be verified, with kubelet's messages.
// imageUID and imageUser are the image's user as the runtime reports it
// (neither: root).
func verifyRunAsNonRoot(pod *v1.Pod, c *v1.Container, imageUID *int64, imageUser string) error {
	nonRoot, user := effectiveRunAs(pod, c)
	if nonRoot == nil || !*nonRoot {
		return nil
	}
	if user != nil {
		if *user == 0 {
			return configErrorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", formatPod(pod), c.Name)
		}
		return nil
	}
	if imageUID == nil && imageUser != "" {
		return configErrorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", imageUser, formatPod(pod), c.Name)
	}
	uid := int64(0)
	if imageUID != nil {
		uid = *imageUID
	}
	switch {
	case uid == 0:
		return configErrorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", formatPod(pod), c.Name)
	case uid < 0 || uid > math.MaxInt32:
		return configErrorf("container has runAsNonRoot and image has an invalid user id (%d). (Must be 1-(%d)): must be between 0 and %d, inclusive (pod: %q, container: %s)", uid, math.MaxInt32, math.MaxInt32, formatPod(pod), c.Name)
	}
	return nil
}

// checkRunAsNonRoot reads the image's user when the container must run as
// non-root without naming a user.
func (m *Manager) checkRunAsNonRoot(ctx context.Context, pod *v1.Pod, c *v1.Container, ref string) error {
	nonRoot, user := effectiveRunAs(pod, c)
	if nonRoot == nil || !*nonRoot || user != nil {
		return verifyRunAsNonRoot(pod, c, nil, "")
	}
	uid, name, err := m.rt.ImageUser(ctx, ref)
	if err != nil {
		return err
	}
	return verifyRunAsNonRoot(pod, c, uid, name)
}

// admit runs the node's admission once for a pod that has not started:
// a pod the node cannot run safely, or whose host port another pod holds,
// never gets a container. A refusal is final for this worker, even if the
// port frees up before the rejection is written.
func (w *worker) admit(pod *v1.Pod) bool {
	switch {
	case w.rejection != nil:
		return false
	case w.admitted:
		return true
	case pod.Status.Phase != "" && pod.Status.Phase != v1.PodPending:
		w.m.holdHostPorts(pod) // it ran before this worker saw it
		w.admitted = true
		return true
	}
	reason, msg, ok := w.m.opts.Security.admit(pod)
	if ok && !w.m.takeHostPorts(pod) {
		reason, msg, ok = reasonNodePorts, msgNodePorts, false
	}
	if !ok {
		w.rejection = &rejection{reason: reason, message: msg}
		return false
	}
	w.admitted = true
	return true
}

// rejection is why the node refused a pod.
type rejection struct{ reason, message string }

// reject fails a pod the node refused, as kubelet reports it: phase
// Failed, the admission's reason, "Pod was rejected: " and why.
func (w *worker) reject(ctx context.Context, pod *v1.Pod) (time.Duration, error) {
	r := w.rejection
	if w.written == nil || w.written.Phase != v1.PodFailed {
		w.m.event(pod, v1.EventTypeWarning, r.reason, "%s", r.message)
	}
	st := v1.PodStatus{
		Phase:    v1.PodFailed,
		Reason:   r.reason,
		Message:  "Pod was rejected: " + r.message,
		QOSClass: pod.Status.QOSClass,
	}
	return w.m.opts.SyncInterval, w.writeStatus(ctx, pod, st)
}

// rejectedAtAdmission: the status says the node refused the pod.
func rejectedAtAdmission(st *v1.PodStatus) bool {
	return st != nil && st.Phase == v1.PodFailed && (st.Reason == reasonSysctlForbidden || st.Reason == reasonAppArmor || st.Reason == reasonNodePorts)
}
