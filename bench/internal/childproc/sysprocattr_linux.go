package childproc

import "syscall"

// sysProcAttr puts a server in its own process group, so a terminal's Ctrl-C
// reaches only the bench (which then stops servers in order), and kills it if
// the bench itself dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
