package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"

	"github.com/keelson/keelson/internal/forkthread"
	"github.com/keelson/keelson/internal/pidfile"
)

// DaemonOptions says how to run the agent's own containerd.
type DaemonOptions struct {
	// Bin is the containerd binary.
	Bin string
	// Dir holds config.toml, root/, state/, the socket and containerd.log.
	Dir string
	// Logger receives start and stop events.
	Logger *slog.Logger
}

// Daemon is a containerd running as the agent's child. It dies with the
// agent: the child gets SIGKILL when the agent's process ends, however it
// ends. Containers outlive it: their shims are separate processes, and a
// restarted containerd on the same root and state finds them again.
type Daemon struct {
	socket string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // valid once done is closed
	log    *slog.Logger
}

// StartDaemon writes containerd's configuration into opts.Dir, starts it and
// waits until its socket answers.
func StartDaemon(ctx context.Context, opts DaemonOptions) (*Daemon, error) {
	bin, err := exec.LookPath(opts.Bin)
	if err != nil {
		return nil, fmt.Errorf("runtime: containerd binary %q not found (install containerd, or point --containerd at a running one): %w", opts.Bin, err)
	}
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, "root"), filepath.Join(opts.Dir, "state")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("runtime: %w", err)
		}
	}
	socket := DaemonSocket(opts.Dir)
	if len(socket) > 100 {
		return nil, fmt.Errorf("runtime: containerd socket path %s is longer than a unix socket allows; use a shorter --data-dir", socket)
	}
	conf := filepath.Join(opts.Dir, "config.toml")
	if err := os.WriteFile(conf, []byte(daemonConfig(opts.Dir, socket)), 0o600); err != nil {
		return nil, fmt.Errorf("runtime: writing %s: %w", conf, err)
	}
	if err := removeStaleSocket(socket); err != nil {
		return nil, err
	}
	logPath := filepath.Join(opts.Dir, "containerd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	d := &Daemon{socket: socket, done: make(chan struct{}), log: opts.Logger}
	cmd := exec.Command(bin, "--config", conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Env = append(os.Environ(), "TMPDIR="+filepath.Join(opts.Dir, "state"))
	// PR_SET_PDEATHSIG fires when the thread that forked the child exits:
	// forkthread forks from a thread that lives as long as the agent.
	if err := forkthread.Start(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("runtime: starting %s: %w", bin, err)
	}
	d.cmd = cmd
	// Recorded so that `keelson killall` stops this very containerd if the
	// agent died without taking it along.
	if err := pidfile.Write(DaemonPIDFile(opts.Dir), cmd.Process.Pid); err != nil {
		opts.Logger.Warn("recording containerd's PID", "err", err)
	}
	go func() {
		defer logFile.Close()
		d.err = cmd.Wait()
		close(d.done)
	}()
	opts.Logger.Info("started containerd", "pid", d.cmd.Process.Pid, "socket", socket, "log", logPath)
	if err := d.waitReady(ctx, logPath); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// DaemonPIDFile is where the daemon run in dir records its PID.
func DaemonPIDFile(dir string) string { return filepath.Join(dir, "containerd.pid") }

// DaemonSocket is the socket of the daemon run in dir.
func DaemonSocket(dir string) string { return filepath.Join(dir, "containerd.sock") }

// Socket is the daemon's gRPC socket.
func (d *Daemon) Socket() string { return d.socket }

// Done is closed when the daemon has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is why the daemon exited, once Done is closed.
func (d *Daemon) Err() error { return d.err }

func (d *Daemon) waitReady(ctx context.Context, logPath string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if _, err := os.Stat(d.socket); err == nil {
			c, err := containerd.New(d.socket, containerd.WithTimeout(2*time.Second))
			if err == nil {
				_, err = c.Version(ctx)
				c.Close()
				if err == nil {
					return nil
				}
			}
		}
		select {
		case <-d.done:
			return fmt.Errorf("runtime: containerd exited at start (%v); see %s", d.err, logPath)
		case <-ctx.Done():
			return fmt.Errorf("runtime: containerd did not answer on %s: %w; see %s", d.socket, ctx.Err(), logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the daemon: SIGTERM, then SIGKILL after ten seconds.
func (d *Daemon) Stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	d.log.Info("containerd stopped", "pid", d.cmd.Process.Pid)
}

// daemonConfig is containerd's configuration: everything under dir, and no
// plugin that would reach beyond it (CRI brings its own CNI and image
// service).
func daemonConfig(dir, socket string) string {
	disabled := []string{
		"io.containerd.grpc.v1.cri",
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.tracing.processor.v1.otlp",
		"io.containerd.internal.v1.tracing",
	}
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	quoted := make([]string, len(disabled))
	for i, p := range disabled {
		quoted[i] = q(p)
	}
	return strings.Join([]string{
		"# Generated by keelson agent; rewritten at every start.",
		"version = 2",
		"root = " + q(filepath.Join(dir, "root")),
		"state = " + q(filepath.Join(dir, "state")),
		"disabled_plugins = [" + strings.Join(quoted, ", ") + "]",
		"",
		"[grpc]",
		"  address = " + q(socket),
		"",
		"[ttrpc]",
		"  address = " + q(socket+".ttrpc"),
		"",
		`[plugins."io.containerd.internal.v1.opt"]`,
		"  path = " + q(filepath.Join(dir, "opt")),
		"",
	}, "\n")
}

// removeStaleSocket removes the socket a killed containerd left, refusing to
// take over one that still answers.
func removeStaleSocket(socket string) error {
	if _, err := os.Stat(socket); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	c, err := containerd.New(socket, containerd.WithTimeout(time.Second))
	if err == nil {
		_, verr := c.Version(context.Background())
		c.Close()
		if verr == nil {
			return fmt.Errorf("runtime: a containerd already answers on %s: is another agent running on this data dir?", socket)
		}
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("runtime: removing stale socket: %w", err)
	}
	return nil
}
