// Package testproc starts and stops the processes that end-to-end tests
// (e2e/...) and benchmarks (bench/...) run: keelson servers and agents, and
// the upstream binaries they are compared with. It is the one launcher both
// share, so every child gets the same care:
//
//   - output to a log file, whose tail errors quote;
//   - the kernel's parent-death signal (SIGKILL), so a test binary that dies
//     without its cleanups (a panic, go test's -timeout) leaves no server
//     behind. Children are forked from one dedicated OS thread that never
//     exits: Pdeathsig fires when the forking *thread* exits, and Go ends a
//     thread whenever a goroutine that locked it (netns switching) returns;
//   - optionally a network namespace (nsenter --net, which execs: the PID is
//     the child's own) and a process group of its own;
//   - readiness waits that fail early, with the log, when the child exits;
//   - stop by PID (SIGTERM, then SIGKILL after a grace period), kill of its
//     process group, and removal of the cgroup trees a node agent leaves.
//
// It lives under internal/ at the module root because both e2e and bench
// import it; it imports nothing of Keelson's.
package testproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/keelson/keelson/internal/forkthread"
)

// Spec describes a process to start.
type Spec struct {
	// Name names the process in errors and logs, e.g. "keelson server e2e-0".
	Name string
	// Bin is the executable, Args its arguments.
	Bin  string
	Args []string
	// Env, when not nil, is added to (and overrides) the parent's environment.
	Env []string
	// NetNS, when set, is a network namespace as `ip netns` names it
	// (/run/netns/NAME) that the process runs in; it keeps the parent's
	// mount and cgroup namespaces.
	NetNS string
	// LogPath receives the process's stdout and stderr; it is truncated
	// unless AppendLog is set.
	LogPath   string
	AppendLog bool
	// ProcessGroup puts the process in a process group of its own: a
	// terminal's Ctrl-C then reaches only the parent, and Kill and Stop
	// signal the whole group.
	ProcessGroup bool
	// SysProcAttr, when set, is the base of the process's attributes;
	// Pdeathsig (SIGKILL) and, with ProcessGroup, Setpgid are set on a copy.
	SysProcAttr *syscall.SysProcAttr
}

// Process is one started child process. Its Spec and Started are read-only.
type Process struct {
	Spec
	// Started is the time just before the process was started.
	Started time.Time

	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // valid after exited is closed
}

// Start starts the process described by spec. The caller must Stop or Kill
// it (a test usually in t.Cleanup).
func Start(spec Spec) (*Process, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if spec.AppendLog {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logFile, err := os.OpenFile(spec.LogPath, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", spec.Name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	argv := append([]string{spec.Bin}, spec.Args...)
	if spec.NetNS != "" {
		argv = append([]string{"nsenter", "--net=/run/netns/" + spec.NetNS, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if spec.Env != nil {
		cmd.Env = append(os.Environ(), spec.Env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(spec)
	p := &Process{Spec: spec, cmd: cmd, exited: make(chan struct{})}
	p.Started = time.Now()
	// Forked from the one thread that never exits (see internal/forkthread),
	// so the child's Pdeathsig fires only when the test process dies.
	if err := forkthread.Start(cmd); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, spec.Bin, err)
	}
	// Ends when the process exits, which Stop and Kill force.
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// PID is the process's id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// CommandLine is the binary and its arguments, space-separated.
func (p *Process) CommandLine() string {
	return strings.Join(p.cmd.Args, " ")
}

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// WaitErr is how the process exited; valid once Exited is closed.
func (p *Process) WaitErr() error { return p.waitErr }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process (SIGSTOP, SIGCONT, SIGTERM...); a
// process that has exited is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s to %s (pid %d): %w", sig, p.Name, p.PID(), err)
	}
	return nil
}

// Kill is a crash: SIGKILL to the process, and with ProcessGroup to every
// process left in its group; it returns once the process has been reaped.
func (p *Process) Kill() {
	if p.ProcessGroup {
		// The group outlives its leader while members remain, and its id
		// is not reused meanwhile.
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	}
	_ = p.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM to the process and escalates to Kill after grace (a
// clean exit is the process's to do: it stops its own children); it returns once
// the process has been reaped, with how it exited, or an error saying it
// had to be killed. Stopping an exited process only reports how it exited.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() {
		return p.waitErr
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		p.Kill()
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return p.waitErr
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", p.Name, p.PID(), grace)
	}
}
