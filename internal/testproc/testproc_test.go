package testproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	p, err := Start(Spec{Name: "fake-server", Bin: "/bin/sh", Args: []string{"-c", script}, LogPath: filepath.Join(t.TempDir(), "out.log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func TestExitedErrQuotesTheTailOfTheOutput(t *testing.T) {
	p := sh(t, `i=1; while [ $i -le 45 ]; do echo "line $i"; i=$((i+1)); done; exit 3`)
	<-p.Exited()
	err := p.ExitedErr()
	if err == nil {
		t.Fatal("ExitedErr = nil after the process exited")
	}
	msg := err.Error()
	for _, want := range []string{"fake-server (pid ", "/bin/sh -c i=1", "exited unexpectedly: exit status 3", "line 6\n", "line 45"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ExitedErr = %q, want it to contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "line 5\n") {
		t.Errorf("ExitedErr = %q, want only the last %d lines", msg, TailLines)
	}
}

func TestStopTerminates(t *testing.T) {
	p := sh(t, "exec sleep 60")
	if err := p.Stop(time.Minute); err == nil || !strings.Contains(err.Error(), "terminated") {
		t.Errorf("Stop = %v, want terminated by SIGTERM", err)
	}
	p.Stop(time.Minute) // a second Stop of an exited process does nothing
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	// Ignored signals stay ignored across exec, so sleep ignores SIGTERM too.
	p := sh(t, "trap '' TERM; echo trapped; exec sleep 60")
	// A SIGTERM before the trap is set would end the shell.
	for !strings.Contains(p.LogTail(1), "trapped") {
		select {
		case <-p.Exited():
			t.Fatalf("shell exited before trapping SIGTERM: %v", p.WaitErr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := p.Stop(10 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not exit within 10ms of SIGTERM") {
		t.Errorf("Stop = %v, want it to say SIGTERM was not enough", err)
	}
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
			p, err := Start(Spec{Name: "etcd", Bin: tt.bin, LogPath: tt.logPath})
			if err == nil {
				p.Kill()
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
		if got := Tail(tt.path, tt.n); !strings.HasPrefix(got, tt.want) {
			t.Errorf("tail(%s, %d) = %q, want %q", filepath.Base(tt.path), tt.n, got, tt.want)
		}
	}
}

func TestKillGroupAndNetNSArgv(t *testing.T) {
	// With a process group of its own, Kill reaches the shell's background
	// child too, which outlives the shell otherwise.
	dir := t.TempDir()
	p, err := Start(Spec{Name: "group", Bin: "/bin/sh", Args: []string{"-c", "sleep 60 & echo $! > " + dir + "/child; wait"},
		LogPath: filepath.Join(dir, "log"), ProcessGroup: true})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for child == 0 {
		b, _ := os.ReadFile(filepath.Join(dir, "child"))
		if _, err := fmt.Sscan(string(b), &child); err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.Kill()
	for syscall.Kill(child, 0) == nil {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child)); strings.Contains(string(b), ") Z ") {
			break // a zombie waiting for init: dead
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWaitLogAndReady(t *testing.T) {
	p := sh(t, "echo starting; sleep 0.2; echo 'msg=\"store ready\"'; exec sleep 60")
	if err := p.WaitLog(`msg="store ready"`, time.Minute); err != nil {
		t.Fatal(err)
	}
	calls := 0
	err := p.WaitReady(context.Background(), time.Minute, time.Millisecond, func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("WaitReady = %v after %d probes, want nil after 3", err, calls)
	}
	gone := sh(t, "echo bye; exit 2")
	err = gone.WaitLog("never", time.Minute)
	if err == nil || !strings.Contains(err.Error(), "before logging never") || !strings.Contains(err.Error(), "bye") {
		t.Errorf("WaitLog on an exited process = %v, want it to say so and quote the log", err)
	}
	err = gone.WaitReady(context.Background(), time.Minute, time.Millisecond, func(context.Context) error { return errors.New("refused") })
	if err == nil || !strings.Contains(err.Error(), "before it was ready; last: refused") {
		t.Errorf("WaitReady on an exited process = %v", err)
	}
}
