package pidfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteReadAlive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	if _, ok, err := Read(path); ok || err != nil {
		t.Fatalf("no file: ok %v err %v", ok, err)
	}
	if err := Write(path, os.Getpid()); err != nil {
		t.Fatal(err)
	}
	p, ok, err := Read(path)
	if err != nil || !ok || p.PID != os.Getpid() {
		t.Fatalf("read %+v %v %v", p, ok, err)
	}
	if !p.Alive() {
		t.Error("this process is not alive by its PID file")
	}
	// Same PID, another start time: a reused PID is not the process.
	if (Process{PID: p.PID, Start: p.Start + 1}).Alive() {
		t.Error("a process with another start time counts as the recorded one")
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	for _, s := range []string{"", "12", "a b", "-3 4", "1 2 3"} {
		os.WriteFile(path, []byte(s), 0o600)
		if _, _, err := Read(path); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func TestStop(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	path := filepath.Join(t.TempDir(), "sleep.pid")
	if err := Write(path, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	p, _, _ := Read(path)
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-done
	if p.Alive() {
		t.Error("alive after Stop")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("stopping a process already gone: %v", err)
	}
}
