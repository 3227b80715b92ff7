package testproc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// TailLines is how much of a process's log its errors quote.
const TailLines = 40

// Tail returns the last n lines of the log at path, leaving out grpc-go's
// connection chatter and the embedded kube-apiserver's etcd client retries,
// which bury everything else once peers go away or the raft leader
// changes; or why it cannot be read.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(l, `msg="[core] `) && !strings.Contains(l, `"msg":"retrying of unary invoker failed"`) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// LogTail is the last n lines of the process's log.
func (p *Process) LogTail(n int) string { return Tail(p.LogPath, n) }

// Failure wraps err with the process's command line and the tail of its
// log, copied now because the log's directory is usually removed on
// cleanup.
func (p *Process) Failure(err error) error {
	return fmt.Errorf("%s (pid %d, %s): %w\n--- last %d lines of its output ---\n%s",
		p.Name, p.PID(), p.CommandLine(), err, TailLines, p.LogTail(TailLines))
}

// ExitedErr reports a process that is gone, or nil while it runs.
func (p *Process) ExitedErr() error {
	if p.Running() {
		return nil
	}
	return p.Failure(fmt.Errorf("exited unexpectedly: %v", p.waitErr))
}

// WaitLog waits until the process's log holds a line containing want. It
// fails early when the process exits first, and after timeout; both
// errors quote the log.
func (p *Process) WaitLog(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(p.LogPath)
		if bytes.Contains(b, []byte(want)) {
			return nil
		}
		select {
		case <-p.exited:
			return p.Failure(fmt.Errorf("exited (%v) before logging %s", p.waitErr, want))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return p.Failure(fmt.Errorf("did not log %s within %s", want, timeout))
		}
	}
}

// WaitReady polls ready every interval until it returns nil. It fails
// early when the process exits or ctx ends, and after timeout with ready's
// last error; errors quote the log.
func (p *Process) WaitReady(ctx context.Context, timeout, interval time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		select {
		case <-p.exited:
			return p.Failure(fmt.Errorf("exited (%v) before it was ready; last: %v", p.waitErr, last))
		case <-ctx.Done():
			return p.Failure(fmt.Errorf("not ready within %s: %v", timeout, last))
		case <-time.After(interval):
		}
	}
}
