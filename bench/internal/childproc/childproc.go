// Package childproc runs the server processes a benchmark measures, each with
// its output in a log file that failures quote.
package childproc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// logTailLines is how much of a process's output a failure quotes.
const logTailLines = 20

// Process is one started child process. Its exported fields are set by Start
// and read-only after.
type Process struct {
	Name    string // names the process in errors, e.g. "etcd"
	Bin     string
	LogPath string
	Started time.Time // just before the process was started

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // valid after exited is closed
}

// Start runs bin with args, its stdout and stderr going to a new file at
// logPath. The caller must Stop the process.
func Start(name, bin string, args []string, logPath string) (*Process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	p := &Process{Name: name, Bin: bin, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	// Ends when the process exits, which Stop forces.
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
	return p.Bin + " " + strings.Join(p.cmd.Args[1:], " ")
}

// Exited is closed once the process has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// WaitErr is how the process exited; valid once Exited is closed.
func (p *Process) WaitErr() error { return p.waitErr }

// Failure wraps err with the process's command line and the tail of its log,
// copied now because the log's directory is usually removed on cleanup.
func (p *Process) Failure(err error) error {
	return fmt.Errorf("%s (pid %d, %s): %w\n--- last %d lines of its output ---\n%s",
		p.Name, p.PID(), p.CommandLine(), err, logTailLines, tail(p.LogPath, logTailLines))
}

// ExitedErr reports a process that is gone, or nil while it runs.
func (p *Process) ExitedErr() error {
	select {
	case <-p.exited:
		return p.Failure(fmt.Errorf("exited unexpectedly: %v", p.waitErr))
	default:
		return nil
	}
}

// Stop sends SIGTERM and escalates to SIGKILL after timeout; it returns once
// the process has been reaped. Stopping an exited process does nothing.
func (p *Process) Stop(timeout time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill() // it ignored SIGTERM; the figures are already taken
		<-p.exited
	}
}

// tail returns the last n lines of the file at path, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
