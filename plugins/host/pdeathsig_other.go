//go:build !linux

package host

import "os/exec"

// setParentDeathSignal has no portable equivalent; the SDK's watchdog ends
// orphaned plugins.
func setParentDeathSignal(*exec.Cmd) {}
