package pods

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func secPod(psc *v1.PodSecurityContext, sc *v1.SecurityContext) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec: v1.PodSpec{
			SecurityContext: psc,
			Containers:      []v1.Container{{Name: "c", SecurityContext: sc}},
		},
	}
}

func TestVerifyRunAsNonRoot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		psc      *v1.PodSecurityContext
		sc       *v1.SecurityContext
		imageUID *int64
		imageUsr string
		want     string // substring of the error; empty: allowed
	}{
		{name: "not asked", imageUID: ptr.To(int64(0))},
		{name: "image root", psc: &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, imageUID: ptr.To(int64(0)),
			want: `container has runAsNonRoot and image will run as root (pod: "p_ns(u1)", container: c)`},
		{name: "image names no user", sc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)},
			want: "image will run as root"},
		{name: "image non-numeric", sc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}, imageUsr: "nobody",
			want: `container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: "p_ns(u1)", container: c)`},
		{name: "image non-root", sc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}, imageUID: ptr.To(int64(1000))},
		{name: "runAsUser 0", psc: &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(0))}, imageUID: ptr.To(int64(1000)),
			want: "container's runAsUser breaks non-root policy"},
		{name: "runAsUser set wins over image", psc: &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, sc: &v1.SecurityContext{RunAsUser: ptr.To(int64(5))}, imageUID: ptr.To(int64(0))},
		{name: "container turns it off", psc: &v1.PodSecurityContext{RunAsNonRoot: ptr.To(true)}, sc: &v1.SecurityContext{RunAsNonRoot: ptr.To(false)}, imageUID: ptr.To(int64(0))},
		{name: "invalid uid", sc: &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}, imageUID: ptr.To(int64(1) << 40), want: "invalid user id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := secPod(tc.psc, tc.sc)
			err := verifyRunAsNonRoot(pod, &pod.Spec.Containers[0], tc.imageUID, tc.imageUsr)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, ok := err.(configError); !ok {
				t.Fatalf("%T is not a configuration error (CreateContainerConfigError)", err)
			}
		})
	}
}

func TestParseImageUser(t *testing.T) {
	for in, want := range map[string]string{"": "none", "0": "uid 0", "1000:1000": "uid 1000", "nobody": "name nobody", "app:staff": "name app"} {
		uid, name := runtime.ParseImageUser(in)
		got := "none"
		switch {
		case uid != nil:
			got = "uid " + itoa(*uid)
		case name != "":
			got = "name " + name
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestSeccompProfiles(t *testing.T) {
	root := t.TempDir()
	rd := &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault}
	unconfined := &v1.SeccompProfile{Type: v1.SeccompProfileTypeUnconfined}
	local := &v1.SeccompProfile{Type: v1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr.To("profiles/audit.json")}
	for _, tc := range []struct {
		name    string
		deflt   bool
		pod, c  *v1.SeccompProfile
		want    runtime.SecurityProfile
		wantErr string
	}{
		{name: "none: unconfined like kubelet without seccompDefault", want: runtime.SecurityProfile{}},
		{name: "none with seccompDefault", deflt: true, want: runtime.SecurityProfile{Type: runtime.ProfileRuntimeDefault}},
		{name: "pod runtime default", pod: rd, want: runtime.SecurityProfile{Type: runtime.ProfileRuntimeDefault}},
		{name: "container wins over pod", pod: rd, c: unconfined, want: runtime.SecurityProfile{}},
		{name: "explicit unconfined wins over seccompDefault", deflt: true, pod: unconfined, want: runtime.SecurityProfile{}},
		{name: "localhost under the root", c: local, want: runtime.SecurityProfile{Type: runtime.ProfileLocalhost, Localhost: filepath.Join(root, "profiles/audit.json")}},
		{name: "localhost without a name", c: &v1.SeccompProfile{Type: v1.SeccompProfileTypeLocalhost}, wantErr: "localhostProfile must be set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := secPod(&v1.PodSecurityContext{SeccompProfile: tc.pod}, &v1.SecurityContext{SeccompProfile: tc.c})
			s := &Security{SeccompProfileRoot: root, SeccompDefault: tc.deflt}
			var spec runtime.ContainerSpec
			err := s.profiles(&spec, pod, &pod.Spec.Containers[0])
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if spec.Seccomp != tc.want {
				t.Fatalf("seccomp %+v, want %+v", spec.Seccomp, tc.want)
			}
		})
	}
}

func TestAppArmor(t *testing.T) {
	local := &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr.To("k8s-deny-write")}
	rd := &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}
	unconfined := &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeUnconfined}

	// Without AppArmor on the host, any profile but Unconfined is refused
	// at admission with kubelet's reason.
	off := &Security{}
	for _, p := range []*v1.AppArmorProfile{local, rd} {
		reason, msg, ok := off.admit(secPod(nil, &v1.SecurityContext{AppArmorProfile: p}))
		if ok || reason != "AppArmor" || msg != "Cannot enforce AppArmor: AppArmor is not enabled on the host" {
			t.Fatalf("%s on a host without AppArmor: admitted=%v %s %s", p.Type, ok, reason, msg)
		}
	}
	if _, _, ok := off.admit(secPod(&v1.PodSecurityContext{AppArmorProfile: unconfined}, nil)); !ok {
		t.Fatal("an Unconfined pod was refused on a host without AppArmor")
	}
	annotated := secPod(nil, nil)
	annotated.Annotations = map[string]string{v1.DeprecatedAppArmorBetaContainerAnnotationKeyPrefix + "c": "localhost/x"}
	if _, _, ok := off.admit(annotated); ok {
		t.Fatal("a pod asking for a profile by the deprecated annotation was admitted on a host without AppArmor")
	}

	// With AppArmor, the container's profile wins over the pod's.
	on := &Security{AppArmor: true}
	pod := secPod(&v1.PodSecurityContext{AppArmorProfile: rd}, &v1.SecurityContext{AppArmorProfile: local})
	var spec runtime.ContainerSpec
	if err := on.profiles(&spec, pod, &pod.Spec.Containers[0]); err != nil {
		t.Fatal(err)
	}
	if spec.AppArmor != (runtime.SecurityProfile{Type: runtime.ProfileLocalhost, Localhost: "k8s-deny-write"}) {
		t.Fatalf("apparmor %+v", spec.AppArmor)
	}
	pod = secPod(&v1.PodSecurityContext{AppArmorProfile: rd}, nil)
	spec = runtime.ContainerSpec{}
	if err := on.profiles(&spec, pod, &pod.Spec.Containers[0]); err != nil || spec.AppArmor.Type != runtime.ProfileRuntimeDefault {
		t.Fatalf("pod's RuntimeDefault: %+v %v", spec.AppArmor, err)
	}
	// Naming none gets the runtime's default (containerd's CRI does so);
	// Unconfined gets none.
	for _, tc := range []struct {
		pod  *v1.Pod
		want runtime.ProfileType
	}{
		{secPod(nil, nil), runtime.ProfileRuntimeDefault},
		{secPod(&v1.PodSecurityContext{AppArmorProfile: unconfined}, nil), runtime.ProfileUnconfined},
	} {
		spec = runtime.ContainerSpec{}
		if err := on.profiles(&spec, tc.pod, &tc.pod.Spec.Containers[0]); err != nil || spec.AppArmor.Type != tc.want {
			t.Fatalf("apparmor %+v %v, want type %d", spec.AppArmor, err, tc.want)
		}
	}
	// Without AppArmor nothing is applied (admission refused what asked).
	spec = runtime.ContainerSpec{}
	if err := off.profiles(&spec, secPod(nil, nil), &v1.Container{Name: "c"}); err != nil || spec.AppArmor.Type != runtime.ProfileUnconfined {
		t.Fatalf("without AppArmor: %+v %v", spec.AppArmor, err)
	}
}

func TestSysctlAdmission(t *testing.T) {
	safe, err := newSysctlAllowlist(nil, "6.1.0-18-amd64")
	if err != nil {
		t.Fatal(err)
	}
	custom, err := newSysctlAllowlist([]string{"kernel.msg*", "net.core.somaxconn"}, "6.1.0")
	if err != nil {
		t.Fatal(err)
	}
	old, err := newSysctlAllowlist(nil, "4.4.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		list    *SysctlAllowlist
		sysctl  string
		hostNet bool
		want    string // the rejection message; empty: admitted
	}{
		{name: "safe", list: safe, sysctl: "net.ipv4.tcp_syncookies"},
		{name: "safe, slash form", list: safe, sysctl: "net/ipv4/ip_local_port_range"},
		{name: "safe ipc", list: safe, sysctl: "kernel.shm_rmid_forced"},
		{name: "unsafe", list: safe, sysctl: "kernel.msgmax", want: `forbidden sysctl: "kernel.msgmax" not allowlisted`},
		{name: "unsafe net", list: safe, sysctl: "net.core.somaxconn", want: `forbidden sysctl: "net.core.somaxconn" not allowlisted`},
		{name: "allowed by pattern", list: custom, sysctl: "kernel.msgmax"},
		{name: "allowed by name", list: custom, sysctl: "net.core.somaxconn"},
		{name: "safe with host network", list: safe, sysctl: "net.ipv4.tcp_syncookies", hostNet: true, want: `forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host Net enabled`},
		{name: "too new for the kernel", list: old, sysctl: "net.ipv4.tcp_rmem", want: "not allowlisted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := secPod(&v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: tc.sysctl, Value: "1"}}}, nil)
			pod.Spec.HostNetwork = tc.hostNet
			s := &Security{Sysctls: tc.list}
			reason, msg, ok := s.admit(pod)
			if tc.want == "" {
				if !ok {
					t.Fatalf("refused: %s %s", reason, msg)
				}
				return
			}
			if ok || reason != "SysctlForbidden" || !strings.Contains(msg, tc.want) {
				t.Fatalf("admitted=%v reason=%s message=%q, want SysctlForbidden %q", ok, reason, msg, tc.want)
			}
		})
	}
	for _, bad := range []string{"*", "kernel.hostname", "vm.swappiness", "Net.core"} {
		if _, err := newSysctlAllowlist([]string{bad}, "6.1"); err == nil || !strings.Contains(err.Error(), "--allowed-unsafe-sysctls") {
			t.Errorf("%q: error %v, want one naming --allowed-unsafe-sysctls", bad, err)
		}
	}
}

func TestSysctlsAppliedNormalized(t *testing.T) {
	pod := secPod(&v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: "net/ipv4/ip_local_port_range", Value: "1024 65000"}}}, nil)
	var spec runtime.ContainerSpec
	applySecurity(&spec, pod, &pod.Spec.Containers[0])
	if spec.Sysctls["net.ipv4.ip_local_port_range"] != "1024 65000" {
		t.Fatalf("sysctls %v", spec.Sysctls)
	}
}

func TestRejectedPodFails(t *testing.T) {
	pod := secPod(&v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: "kernel.msgmax", Value: "65536"}}}, nil)
	pod.Status.Phase = v1.PodPending
	client := fake.NewSimpleClientset(pod)
	m := New(Options{Client: client, SyncInterval: time.Minute})
	m.pods[pod.UID] = pod
	w := newWorker(m, pod.UID)
	if _, done := w.sync(context.Background()); done {
		t.Fatal("the worker finished a pod that exists")
	}
	got, err := client.CoreV1().Pods("ns").Get(context.Background(), "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.PodFailed || got.Status.Reason != "SysctlForbidden" ||
		got.Status.Message != `Pod was rejected: forbidden sysctl: "kernel.msgmax" not allowlisted` {
		t.Fatalf("status %+v", got.Status)
	}

	// A pod already running is not re-admitted (a restarted agent keeps it).
	running := pod.DeepCopy()
	running.Status.Phase = v1.PodRunning
	if !newWorker(m, pod.UID).admit(running) {
		t.Fatal("a running pod was re-admitted and refused")
	}
}
