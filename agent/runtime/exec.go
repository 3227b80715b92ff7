package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
)

// Size is a terminal size.
type Size struct{ Width, Height uint16 }

// ExecOptions describe a command run in a container.
type ExecOptions struct {
	Cmd    []string
	Stdin  io.Reader // nil: no input
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // nil: discarded; unused with TTY
	TTY    bool
	Resize <-chan Size
}

// ExitError is a command's non-zero exit.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("command terminated with exit code %d", e.Code) }

// Exec runs a command in a running container, as the container's user, in
// its namespaces and cgroup, and waits for it. A non-zero exit is an
// ExitError. Canceling ctx kills the command.
func (r *Runtime) Exec(ctx context.Context, id string, opts ExecOptions) error {
	ctx = r.ns(ctx)
	c, task, err := r.runningTask(ctx, id)
	if err != nil {
		return err
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return fmt.Errorf("runtime: spec of %s: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = opts.Cmd
	pspec.Terminal = opts.TTY
	execID := randomID()

	fifos, err := cio.NewFIFOSetInDir(r.opts.fifoDir(), execID, opts.TTY)
	if err != nil {
		return fmt.Errorf("runtime: exec fifos: %w", err)
	}
	if opts.Stdin == nil {
		fifos.Stdin = ""
	}
	if opts.TTY {
		fifos.Stderr = ""
	}
	var direct *cio.DirectIO
	process, err := task.Exec(ctx, execID, &pspec, func(string) (cio.IO, error) {
		d, err := cio.NewDirectIO(ctx, fifos)
		direct = d
		return d, err
	})
	if err != nil {
		fifos.Close()
		return fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	// The process is deleted with a fresh context: ctx may be canceled.
	defer func() {
		if _, err := process.Delete(r.ns(context.Background()), containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("deleting an exec'd process", "container", id, "exec", execID, "err", err)
		}
	}()
	exited, err := process.Wait(ctx)
	if err != nil {
		return fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	var copies sync.WaitGroup
	copyOut := func(w io.Writer, rd io.Reader) {
		if rd == nil {
			return
		}
		if w == nil {
			w = io.Discard
		}
		copies.Go(func() { _, _ = io.Copy(w, rd) })
	}
	copyOut(opts.Stdout, direct.Stdout)
	copyOut(opts.Stderr, direct.Stderr)
	if err := process.Start(ctx); err != nil {
		direct.Cancel()
		direct.Close()
		return fmt.Errorf("runtime: starting exec in %s: %w", id, err)
	}
	r.feed(process, direct, opts)
	var status containerd.ExitStatus
	select {
	case status = <-exited:
	case <-ctx.Done():
		_ = process.Kill(r.ns(context.Background()), syscall.SIGKILL)
		status = <-exited
	}
	copies.Wait()
	direct.Close()
	return execResult(ctx, id, status)
}

// feed copies opts.Stdin to the process and applies terminal resizes, in the
// background, until they end.
func (r *Runtime) feed(process containerd.Process, direct *cio.DirectIO, opts ExecOptions) {
	if opts.Stdin != nil {
		go func() {
			_, _ = io.Copy(direct.Stdin, opts.Stdin)
			// The process sees end of input once every writer of the FIFO
			// is gone: this one, then the shim's.
			direct.Stdin.Close()
			_ = process.CloseIO(r.ns(context.Background()), containerd.WithStdinCloser)
		}()
	}
	if opts.Resize != nil {
		go func() {
			for s := range opts.Resize {
				if err := process.Resize(r.ns(context.Background()), uint32(s.Width), uint32(s.Height)); err != nil {
					return
				}
			}
		}()
	}
}

// execResult is an exec's outcome: its exit, or ctx's error if ctx ended it.
func execResult(ctx context.Context, id string, status containerd.ExitStatus) error {
	if err := status.Error(); err != nil {
		return fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if code := status.ExitCode(); code != 0 {
		return ExitError{Code: int(code)}
	}
	return nil
}

// IsExitError returns the exit code of a command's non-zero exit.
func IsExitError(err error) (int, bool) {
	var e ExitError
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewID returns a fresh container ID.
func NewID() string { return randomID() + randomID()[:16] }
