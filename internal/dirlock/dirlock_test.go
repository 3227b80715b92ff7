package dirlock

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestSecondHolderIsRefusedWithThePID(t *testing.T) {
	dir := t.TempDir()
	first, err := Acquire(dir, "--data-dir")
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to an open file description, so a second open in
	// this same process conflicts exactly as another process would.
	_, err = Acquire(dir, "--data-dir")
	if err == nil {
		t.Fatal("a second Acquire of a held dir succeeded")
	}
	for _, want := range []string{"--data-dir " + dir + " is in use", fmt.Sprintf("(PID %d)", os.Getpid()), "its own --data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(dir, "--data-dir")
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	again.Release()
}
