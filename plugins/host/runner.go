package host

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/keelson/keelson/internal/forkthread"
)

// processRunner is go-plugin's runner for one plugin process, started from
// forkthread's thread. go-plugin's own runner forks from whatever thread
// calls it, and a plugin's parent-death signal fires when that thread ends,
// which Go does whenever a goroutine ends locked to it (the embedded agent's
// network-namespace work does): every plugin would die with such a thread.
type processRunner struct {
	cmd            *exec.Cmd
	stdout, stderr io.ReadCloser
}

var _ runner.Runner = (*processRunner)(nil)

// runnerFunc returns go-plugin's RunnerFunc for l: it checks the binary's
// checksum (go-plugin's SecureConfig checks only its own Cmd), then takes
// go-plugin's handshake environment and stdin from its template command.
func (l *launch) runnerFunc(sum []byte, newHash func() hash.Hash) func(hclog.Logger, *exec.Cmd, string) (runner.Runner, error) {
	return func(_ hclog.Logger, template *exec.Cmd, _ string) (runner.Runner, error) {
		if sum != nil && l.runAs != nil {
			if err := l.runAs.prepare(l.cmd, l.sp.Name, sum); err != nil {
				return nil, err
			}
		} else if sum != nil {
			ok, err := checkChecksum(l.cmd.Path, sum, newHash)
			if err != nil {
				return nil, fmt.Errorf("verifying the checksum of %s: %w", l.cmd.Path, err)
			}
			if !ok {
				return nil, plugin.ErrChecksumsDoNotMatch
			}
		}
		l.cmd.Env = append(l.cmd.Env, template.Env...)
		l.cmd.Stdin = template.Stdin
		r := &processRunner{cmd: l.cmd}
		var err error
		if r.stdout, err = l.cmd.StdoutPipe(); err != nil {
			return nil, err
		}
		if r.stderr, err = l.cmd.StderrPipe(); err != nil {
			return nil, err
		}
		return r, nil
	}
}

// pluginNice is how many nice steps below the host every plugin process
// runs (Linux's weight 335 against the host's 1024 at nice 0). On a busy
// machine the server's raft heartbeats and API come first. At 1,000 kwok
// nodes and 18,000 pods every new leader lost its lease while its plugins
// started, each listing every pod, and the next did the same, every few
// seconds for good; a plugin's work waits a little longer instead.
const pluginNice = 5

func (r *processRunner) Start(context.Context) error { return forkthread.StartNice(r.cmd, pluginNice) }

func (r *processRunner) Wait(context.Context) error { return r.cmd.Wait() }

func (r *processRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *processRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *processRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *processRunner) Name() string          { return r.cmd.Path }

func (r *processRunner) ID() string {
	if r.cmd.Process == nil {
		return ""
	}
	return strconv.Itoa(r.cmd.Process.Pid)
}

func (r *processRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("%s did not complete the plugin handshake: is it a keelson plugin built for this platform, executable, and speaking the go-plugin protocol?", r.cmd.Path)
}

// The plugin runs beside the host: addresses mean the same on both sides.
func (r *processRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *processRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}
