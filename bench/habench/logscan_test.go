package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFirstLogAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s1.1.log")
	log := `time=2026-11-28T02:33:44.908Z level=INFO msg="entering leader state" component=raft
not a log line msg="entering leader state"
time=2026-11-28T02:34:10.500Z level=WARN msg="heartbeat timeout reached, starting election" component=raft
time=2026-11-28T02:34:11.250Z level=INFO msg="entering leader state" component=raft
time=2026-11-28T02:34:12.000Z level=INFO msg="entering leader state" component=raft
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name   string
		msg    string
		after  time.Time
		want   time.Time
		wantOK bool
	}{
		{"skips lines before after", msgLeader, at("2026-11-28T02:34:10Z"), at("2026-11-28T02:34:11.250Z"), true},
		{"same millisecond counts", msgLeader, at("2026-11-28T02:34:11.2504Z"), at("2026-11-28T02:34:11.250Z"), true},
		{"other message", msgElectionStart, at("2026-11-28T02:34:00Z"), at("2026-11-28T02:34:10.500Z"), true},
		{"nothing after", msgLeader, at("2026-11-28T02:35:00Z"), time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := firstLogAfter(path, tt.msg, tt.after)
			if ok != tt.wantOK || !got.Equal(tt.want) {
				t.Errorf("firstLogAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
	if _, ok := firstLogAfter(filepath.Join(t.TempDir(), "missing.log"), msgLeader, time.Time{}); ok {
		t.Error("firstLogAfter found a line in a missing file")
	}
}
