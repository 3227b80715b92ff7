package childproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sh starts /bin/sh -c script with its log in a temp dir, and stops it when
// the test ends.
func sh(t *testing.T, script string) *Process {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	p, err := Start("fake-server", "/bin/sh", []string{"-c", script}, filepath.Join(t.TempDir(), "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

func TestExitedErrQuotesTheTailOfTheOutput(t *testing.T) {
	p := sh(t, `i=1; while [ $i -le 25 ]; do echo "line $i"; i=$((i+1)); done; exit 3`)
	<-p.Exited()
	err := p.ExitedErr()
	if err == nil {
		t.Fatal("ExitedErr = nil after the process exited")
	}
	msg := err.Error()
	for _, want := range []string{"fake-server (pid ", "/bin/sh -c i=1", "exited unexpectedly: exit status 3", "line 6\n", "line 25"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ExitedErr = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "line 5\n") {
		t.Errorf("ExitedErr = %q, want only the last %d lines", msg, logTailLines)
	}
}

func TestStopTerminates(t *testing.T) {
	p := sh(t, "exec sleep 60")
	p.Stop(time.Minute)
	if err := p.WaitErr(); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("WaitErr after Stop = %v, want terminated by SIGTERM", err)
	}
	p.Stop(time.Minute) // a second Stop of an exited process does nothing
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	// Ignored signals stay ignored across exec, so sleep ignores SIGTERM too.
	p := sh(t, "trap '' TERM; echo trapped; exec sleep 60")
	// A SIGTERM before the trap is set would end the shell.
	for !strings.Contains(tail(p.LogPath, 1), "trapped") {
		select {
		case <-p.Exited():
			t.Fatalf("shell exited before trapping SIGTERM: %v", p.WaitErr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	p.Stop(10 * time.Millisecond)
	if err := p.WaitErr(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("WaitErr after Stop = %v, want killed by SIGKILL", err)
	}
}

func TestStartErrorsNameTheProcess(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, bin, logPath, want string
	}{
		{"missing binary", filepath.Join(dir, "no-such-bin"), filepath.Join(dir, "a.log"), "start etcd (" + filepath.Join(dir, "no-such-bin")},
		{"log dir missing", "/bin/sh", filepath.Join(dir, "gone", "a.log"), "create log for etcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start("etcd", tt.bin, nil, tt.logPath)
			if err == nil {
				p.Stop(time.Second)
				t.Fatalf("Start succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		n    int
		want string
	}{
		{path, 2, "b\nc"},
		{path, 10, "a\nb\nc"},
		{path + ".missing", 2, "(cannot read log: "},
	}
	for _, tt := range tests {
		if got := tail(tt.path, tt.n); !strings.HasPrefix(got, tt.want) {
			t.Errorf("tail(%s, %d) = %q, want %q", filepath.Base(tt.path), tt.n, got, tt.want)
		}
	}
}
