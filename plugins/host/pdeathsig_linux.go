package host

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel SIGKILL the plugin when the host
// dies, even by SIGKILL. It fires when the forking OS thread exits, so
// plugins are forked from forkthread's thread, which lives as long as the
// host; the SDK's watchdog covers other platforms.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
