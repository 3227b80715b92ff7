package config

import (
	"strings"
	"testing"
)

func TestAllowedUnsafeSysctlsValidation(t *testing.T) {
	for p, ok := range map[string]bool{
		"kernel.msg*": true, "net.core.somaxconn": true, "net.*": true, "kernel.shm_rmid_forced": true,
		"*": false, "vm.swappiness": false, "kernel.hostname": false, "net..core": false, "Net.core": false,
	} {
		n := DefaultNode()
		n.Kubelet.AllowedUnsafeSysctls = []string{p}
		a := DefaultAgent()
		a.Node = n
		a.Server, a.Token, a.NodeName = "https://127.0.0.1:6443", "K10abc::server:secret", "n1"
		err := a.Validate()
		if ok && err != nil && strings.Contains(err.Error(), "allowedUnsafeSysctls") {
			t.Errorf("%q refused: %v", p, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "allowed-unsafe-sysctls")) {
			t.Errorf("%q: error %v, want one naming --allowed-unsafe-sysctls", p, err)
		}
	}
	n := DefaultNode()
	n.Kubelet.SeccompProfileRoot = "relative/dir"
	a := DefaultAgent()
	a.Node = n
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "seccomp-profile-root") {
		t.Errorf("relative seccomp root: %v", err)
	}
}
