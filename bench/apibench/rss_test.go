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
		want    procMemory
		wantErr bool
	}{
		{"both", "Name:\tetcd\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t9\n", procMemory{VmRSSKiB: 1024, VmHWMKiB: 2048}, false},
		{"zombie has neither", "Name:\tetcd\nState:\tZ (zombie)\n", procMemory{}, true},
		{"unexpected unit", "VmHWM:\t2 MB\nVmRSS:\t1 kB\n", procMemory{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatus(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Errorf("parseStatus = %+v, %v; want %+v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestReadMemoryOfSelf(t *testing.T) {
	m, err := readMemory(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if m.VmRSSKiB <= 0 || m.VmHWMKiB < m.VmRSSKiB {
		t.Errorf("own memory %+v: want RSS > 0 and HWM >= RSS", m)
	}
}
