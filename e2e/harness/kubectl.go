package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/testproc"
)

// KubectlTimeout bounds one kubectl invocation.
const KubectlTimeout = 2 * time.Minute

// KubectlResult is what one `keelson kubectl` run printed and returned.
type KubectlResult struct {
	Stdout, Stderr string
	ExitCode       int
}

func (r KubectlResult) String() string {
	return "exit " + strconv.Itoa(r.ExitCode) + "\nstdout:\n" + r.Stdout + "\nstderr:\n" + r.Stderr
}

// Kubectl runs `keelson kubectl` (Bin) with one admin kubeconfig, against
// any server a test started.
type Kubectl struct {
	Bin, Kubeconfig string
	// CacheDir is kubectl's discovery cache; default beside the kubeconfig.
	CacheDir string
}

func (k Kubectl) args(args []string) []string {
	cache := k.CacheDir
	if cache == "" {
		cache = filepath.Join(filepath.Dir(k.Kubeconfig), "kubectl-cache")
	}
	return append([]string{"kubectl", "--kubeconfig", k.Kubeconfig, "--cache-dir", cache}, args...)
}

// RunIn runs kubectl with stdin as input (may be empty) and returns
// whatever happened; it fails the test only if kubectl could not be run at
// all.
func (k Kubectl) RunIn(t testing.TB, stdin string, args ...string) KubectlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), KubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.Bin, k.args(args)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := KubectlResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		r.ExitCode = exitErr.ExitCode()
	default:
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// Must runs kubectl and fails the test unless it exits 0; it returns
// stdout.
func (k Kubectl) Must(t testing.TB, args ...string) string {
	t.Helper()
	return k.MustIn(t, "", args...)
}

// MustIn is Must with stdin as kubectl's input.
func (k Kubectl) MustIn(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	r := k.RunIn(t, stdin, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s failed:\n%s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

func (s *Server) kubectl() Kubectl {
	return Kubectl{Bin: s.Bin, Kubeconfig: s.Kubeconfig(), CacheDir: filepath.Join(s.DataDir, "kubectl-cache")}
}

// KubectlIn runs `keelson kubectl --kubeconfig ADMIN args...` with stdin as
// input (may be empty) and returns whatever happened; it fails the test only
// if kubectl could not be run at all.
func (s *Server) KubectlIn(t testing.TB, stdin string, args ...string) KubectlResult {
	t.Helper()
	return s.kubectl().RunIn(t, stdin, args...)
}

func (s *Server) Kubectl(t testing.TB, args ...string) KubectlResult {
	t.Helper()
	return s.KubectlIn(t, "", args...)
}

// mustKubectl runs kubectl and fails the test unless it exits 0; it returns
// stdout.
func (s *Server) MustKubectl(t testing.TB, args ...string) string {
	t.Helper()
	return s.kubectl().Must(t, args...)
}

// BackgroundKubectl is a long-running kubectl (a --watch) whose output lines
// are collected as they come.
type BackgroundKubectl struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	more  chan struct{} // signalled after each new line
	done  chan struct{} // closed when stdout is closed
	errb  lockedBuffer
}

// lockedBuffer is a bytes.Buffer that exec's copying goroutine and the test
// may use at the same time.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startKubectl starts kubectl in the background; it is killed when the test
// ends.
func (s *Server) StartKubectl(t testing.TB, args ...string) *BackgroundKubectl {
	t.Helper()
	return s.StartKubectlIn(t, "", args...)
}

// StartKubectlIn is StartKubectl with stdin as kubectl's input.
func (s *Server) StartKubectlIn(t testing.TB, stdin string, args ...string) *BackgroundKubectl {
	t.Helper()
	b := &BackgroundKubectl{more: make(chan struct{}, 1), done: make(chan struct{})}
	b.cmd = exec.Command(s.Bin, s.kubectl().args(args)...)
	if stdin != "" {
		b.cmd.Stdin = strings.NewReader(stdin)
	}
	b.cmd.SysProcAttr = testproc.ChildAttr()
	b.cmd.Stderr = &b.errb
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("kubectl stdout pipe: %v", err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting kubectl %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.mu.Lock()
			b.lines = append(b.lines, sc.Text())
			b.mu.Unlock()
			select {
			case b.more <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
		_ = b.cmd.Wait()
	})
	return b
}

// waitLine waits until the background kubectl has printed a line equal to
// want, failing the test after timeout or if kubectl exits first.
func (b *BackgroundKubectl) WaitLine(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		b.mu.Lock()
		for _, l := range b.lines {
			if strings.TrimSpace(l) == want {
				b.mu.Unlock()
				return
			}
		}
		got := append([]string(nil), b.lines...)
		b.mu.Unlock()
		select {
		case <-b.more:
		case <-b.done:
			// Drain lines printed just before exit, then give up.
			b.mu.Lock()
			n := len(b.lines)
			b.mu.Unlock()
			if n == len(got) {
				t.Fatalf("kubectl exited without printing %q; printed %q; stderr: %s", want, got, b.errb.String())
			}
		case <-deadline:
			t.Fatalf("kubectl did not print %q within %s; printed %q", want, timeout, got)
		}
	}
}
