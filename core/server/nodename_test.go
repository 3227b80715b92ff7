package server

import (
	"strings"
	"testing"
)

func TestNodeNameIsPinnedToTheDataDir(t *testing.T) {
	dir := t.TempDir()
	if err := checkNodeName(dir, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := checkNodeName(dir, "s1"); err != nil {
		t.Fatalf("same name again: %v", err)
	}
	err := checkNodeName(dir, "s2")
	if err == nil || !strings.Contains(err.Error(), "--node-name s1") {
		t.Fatalf("changed name: %v", err)
	}
}
