package ops

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
)

// exitWait bounds how long a server that must refuse to start may take to
// exit; a hang guard on a busy machine, not a timing claim.
const exitWait = 2 * time.Minute

// neighbourIP is the next loopback address after the cluster's first
// server's (StartCluster puts server i on 127.R.R.i).
func neighbourIP(t *testing.T, s *harness.Server, last int) string {
	t.Helper()
	host, _, err := net.SplitHostPort(s.SerfAddr())
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(host).To4()
	ip[3] = byte(last)
	return ip.String()
}

// runServer runs `keelson server` with args until it exits, and returns its
// output and exit error. It fails the test if the server keeps running.
func runServer(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.KeelsonBin(t), append([]string{"server"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("keelson server %v was still running after %s instead of refusing to start; output tail:\n%s", args, exitWait, tail(out.String(), 30))
	}
	return out.String(), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// duplicateArgs are the flags of a second server on ip joining first; the
// supervisor and gossip ports are the first's, as on another host.
func duplicateArgs(t *testing.T, first *harness.Server, ip, name, dataDir string) []string {
	return []string{
		"--data-dir", dataDir, "--node-name", name,
		"--bind-address", ip,
		"--api-port", strconv.Itoa(harness.FreePort(t)),
		"--raft-bind", net.JoinHostPort(ip, strconv.Itoa(harness.FreePort(t))),
		"--serf-port", strconv.Itoa(first.SerfPort()),
		"--supervisor-port", strconv.Itoa(first.SupervisorPort()),
		"--disable-agent", "--disable-apiserver", "--disable-plugin", "*",
		"--join", first.SerfAddr(), "--token", first.JoinToken(t),
	}
}

func TestDuplicateNodeNameFailsFast(t *testing.T) {
	c := harness.StartCluster(t, 1, harness.ServerOptions{DisableAPIServer: true})
	first := c.Servers[0]
	out, err := runServer(t, duplicateArgs(t, first, neighbourIP(t, first, 2), first.Name(), t.TempDir())...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("a second server named %s: exit %v; want a non-zero exit. Output tail:\n%s", first.Name(), err, tail(out, 30))
	}
	want := `node name "` + first.Name() + `" is already used by another live server of the gossip pool at ` + first.SerfAddr()
	for _, w := range []string{want, "--node-name"} {
		if !strings.Contains(out, "keelson: ") || !strings.Contains(out, w) {
			t.Errorf("the refusal lacks %q; output tail:\n%s", w, tail(out, 30))
		}
	}
	// The first server was never disturbed: it still leads its cluster.
	if !first.Running() {
		t.Fatal("the first server stopped")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if p, err := first.Peers(ctx); err != nil || p.State != "Leader" || len(p.Peers) != 1 {
		t.Errorf("the first server after the refused duplicate: %+v, %v; want it the only server, leading", p, err)
	}
}

func TestDataDirInUseIsRefused(t *testing.T) {
	c := harness.StartCluster(t, 1, harness.ServerOptions{DisableAPIServer: true})
	first := c.Servers[0]
	out, err := runServer(t, duplicateArgs(t, first, neighbourIP(t, first, 3), "other", first.DataDir)...)
	if err == nil {
		t.Fatalf("a second server on %s started; output tail:\n%s", first.DataDir, tail(out, 30))
	}
	for _, w := range []string{"--data-dir " + first.DataDir + " is in use by another keelson process (PID ", "its own --data-dir"} {
		if !strings.Contains(out, w) {
			t.Errorf("the refusal lacks %q; output tail:\n%s", w, tail(out, 30))
		}
	}
}
