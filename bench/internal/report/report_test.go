package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMachineLeadsTheJSON(t *testing.T) {
	doc := struct {
		Machine
		Notes []string `json:"notes"`
	}{Machine{GoVersion: "go1.0", Platform: "linux/amd64", CPUs: 2}, []string{"n"}}
	path := filepath.Join(t.TempDir(), "figures.json")
	if err := WriteJSON(path, doc); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"go_version\": \"go1.0\",\n  \"platform\": \"linux/amd64\",\n  \"cpus\": 2,\n  \"notes\": [\n    \"n\"\n  ]\n}\n"
	if string(got) != want {
		t.Errorf("WriteJSON wrote\n%s\nwant\n%s", got, want)
	}
}

func TestWriteJSONErrorsNameTheFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "figures.json")
	if err := WriteJSON(path, 1); err == nil || !strings.Contains(err.Error(), "-json "+path) {
		t.Errorf("WriteJSON error = %v, want it to name -json %s", err, path)
	}
	if err := WriteJSON(path, func() {}); err == nil || !strings.Contains(err.Error(), "encode figures") {
		t.Errorf("WriteJSON(func) error = %v, want an encode error", err)
	}
}

func TestPrintNotes(t *testing.T) {
	var b strings.Builder
	PrintNotes(&b, []string{"one", "two"})
	if want := "  - one\n  - two\n\n"; b.String() != want {
		t.Errorf("PrintNotes wrote %q, want %q", b.String(), want)
	}
}

func TestThisMachine(t *testing.T) {
	m := ThisMachine()
	if !strings.HasPrefix(m.GoVersion, "go") || !strings.Contains(m.Platform, "/") || m.CPUs < 1 {
		t.Errorf("ThisMachine = %+v", m)
	}
}
