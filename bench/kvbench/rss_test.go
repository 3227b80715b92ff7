package main

import (
	"os"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    memory
		wantErr bool
	}{
		{"both", "Name:\tetcd\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t9\n", memory{VmRSSKiB: 1024, VmHWMKiB: 2048}, false},
		{"zombie has no Vm lines", "Name:\tetcd\nState:\tZ (zombie)\n", memory{}, true},
		{"bad unit", "VmHWM:\t2 MB\nVmRSS:\t1 kB\n", memory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadMemoryOfSelf(t *testing.T) {
	m, err := readMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.VmRSSKiB <= 0 || m.VmHWMKiB < m.VmRSSKiB {
		t.Errorf("own memory %+v: want 0 < VmRSS <= VmHWM", m)
	}
}
