package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

const (
	// stopTimeout is how long a server gets to exit after SIGTERM before
	// SIGKILL; kube-apiserver drains requests on SIGTERM.
	stopTimeout  = 15 * time.Second
	logTailLines = 20
)

// proc is one server process started by the bench, with its output in a file.
type proc struct {
	name    string // "keelson", "etcd", "kube-apiserver"
	bin     string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	exited  chan struct{} // closed when the process has been reaped
	waitErr error         // valid after exited is closed
}

// startProc runs bin with args, its stdout and stderr going to logPath.
func startProc(name, bin string, args []string, logPath string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log for %s: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	p := &proc{name: name, bin: bin, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// failure wraps err with the process's command line and the tail of its log,
// copied now because the log's directory is removed on cleanup.
func (p *proc) failure(err error) error {
	return fmt.Errorf("%s (pid %d, %s %s): %w\n--- last %d lines of its output ---\n%s",
		p.name, p.pid(), p.bin, strings.Join(p.cmd.Args[1:], " "), err,
		logTailLines, tail(p.logPath, logTailLines))
}

// exitedErr reports a process that is gone, or nil while it runs.
func (p *proc) exitedErr() error {
	select {
	case <-p.exited:
		return p.failure(fmt.Errorf("exited unexpectedly: %v", p.waitErr))
	default:
		return nil
	}
}

// stop sends SIGTERM and escalates to SIGKILL after stopTimeout.
func (p *proc) stop() {
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
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill() // it ignored SIGTERM; the figures are already taken
		<-p.exited
	}
}

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

// freePorts asks the kernel for n distinct unused loopback ports. They are
// released before the servers bind them; a collision shows up as a start
// failure with the server's log.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free loopback port: %w", err)
		}
		defer l.Close() // held until all n are chosen so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
