package testproc

import "syscall"

// sysProcAttr makes the kernel kill the child when its parent dies, and
// gives it a process group of its own when asked.
func sysProcAttr(spec Spec) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if spec.SysProcAttr != nil {
		c := *spec.SysProcAttr
		a = &c
	}
	a.Pdeathsig = syscall.SIGKILL
	if spec.ProcessGroup {
		a.Setpgid = true
	}
	return a
}

// ChildAttr is the attributes Start gives a child (the parent-death signal
// where the platform has one), for a short-lived command a test must run
// with pipes through os/exec itself.
func ChildAttr() *syscall.SysProcAttr { return sysProcAttr(Spec{}) }
