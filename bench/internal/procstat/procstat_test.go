package procstat

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Memory
		wantErr bool
	}{
		{"both", "Name:\tetcd\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t9\n", Memory{VmRSSKiB: 1024, VmHWMKiB: 2048}, false},
		{"with anon", "VmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t  300 kB\nRssFile:\t 724 kB\n", Memory{VmRSSKiB: 1024, VmHWMKiB: 2048, RssAnonKiB: 300}, false},
		{"zombie has neither", "Name:\tetcd\nState:\tZ (zombie)\n", Memory{}, true},
		{"only one", "VmRSS:\t1 kB\n", Memory{}, true},
		{"unexpected unit", "VmHWM:\t2 MB\nVmRSS:\t1 kB\n", Memory{}, true},
		{"not a number", "VmHWM:\tx kB\nVmRSS:\t1 kB\n", Memory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Errorf("ParseStatus = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestReadMemoryOfSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no /proc on " + runtime.GOOS)
	}
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.VmRSSKiB <= 0 || m.VmHWMKiB < m.VmRSSKiB {
		t.Errorf("own memory %+v: want 0 < VmRSS <= VmHWM", m)
	}
}

func TestReadMemoryOfMissingProcessNamesThePath(t *testing.T) {
	_, err := ReadMemory(-1)
	if err == nil || !strings.Contains(err.Error(), "/proc/-1/status") {
		t.Errorf("ReadMemory(-1) error = %v, want it to name /proc/-1/status", err)
	}
}

func TestLoadAvg(t *testing.T) {
	tests := []struct {
		name    string
		content string
		noFile  bool // no /proc/loadavg at all
		want    string
	}{
		{"first field", "0.52 0.58 0.59 1/467 12345\n", false, "0.52"},
		{"empty file", "", false, "?"},
		{"no file", "", true, "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "loadavg")
			if !tt.noFile {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := loadAvg(path); got != tt.want {
				t.Errorf("loadAvg = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMiB(t *testing.T) {
	if got := MiB(1536); got != 1.5 {
		t.Errorf("MiB(1536) = %v, want 1.5", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "4242 (kube (sched)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 1000 200 18446744073709551615"
	got, err := ParseStatCPU(line)
	if err != nil || got != 3.25 {
		t.Fatalf("ParseStatCPU = %v, %v; want 3.25 s (250 + 75 ticks)", got, err)
	}
	if _, err := ParseStatCPU("garbage"); err == nil {
		t.Fatal("no error for a line without a command name")
	}
}

func TestCPUSecondsOfThisProcess(t *testing.T) {
	if _, err := CPUSeconds(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestParseRollup(t *testing.T) {
	in := `55d0c0a5e000-7ffd9b3f1000 ---p 00000000 00:00 0                          [rollup]
Rss:               21504 kB
Pss:               12001 kB
Pss_Anon:           8000 kB
Shared_Clean:       9000 kB
Private_Clean:      3000 kB
Private_Dirty:      8200 kB
Anonymous:          8100 kB
`
	got, err := ParseRollup(in)
	if err != nil {
		t.Fatal(err)
	}
	want := Rollup{RssKiB: 21504, PssKiB: 12001, PrivateKiB: 11200, AnonKiB: 8100}
	if got != want {
		t.Fatalf("ParseRollup = %+v, want %+v", got, want)
	}
	if _, err := ParseRollup("Rss: 1 kB\nPss: 1 kB\nAnonymous: 1 kB\n"); err == nil || !strings.Contains(err.Error(), "Private_") {
		t.Fatalf("missing private lines: err = %v, want one naming the line", err)
	}
}

func TestReadRollupOfSelf(t *testing.T) {
	r, err := ReadRollup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if r.PrivateKiB <= 0 || r.PssKiB <= 0 || r.RssKiB < r.PssKiB {
		t.Fatalf("ReadRollup(self) = %+v: want positive private and Pss <= Rss", r)
	}
}
