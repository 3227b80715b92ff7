package hclogbridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogBridge(t *testing.T) {
	tests := []struct {
		name      string
		log       func(hclog.Logger)
		wantLevel string
		wantMsg   string
		wantAttrs map[string]any
	}{
		{"info with pairs", func(l hclog.Logger) { l.Info("entering leader state", "leader", "n1") },
			"INFO", "entering leader state", map[string]any{"leader": "n1", "component": "raft"}},
		{"error value is a string", func(l hclog.Logger) { l.Error("failed", "error", errors.New("boom")) },
			"ERROR", "failed", map[string]any{"error": "boom"}},
		{"warn odd args", func(l hclog.Logger) { l.Warn("odd", "k") },
			"WARN", "odd", map[string]any{"EXTRA_VALUE": "k"}},
		{"named and with", func(l hclog.Logger) { l.Named("snapshot").With("id", "1-2").Debug("reaping") },
			"DEBUG", "reaping", map[string]any{"component": "raft.snapshot", "id": "1-2"}},
		{"trace is dropped below debug", func(l hclog.Logger) { l.Trace("noise") }, "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tt.log(New(base, "raft"))
			out := strings.TrimSpace(buf.String())
			if tt.wantMsg == "" {
				if out != "" {
					t.Fatalf("expected no output, got %s", out)
				}
				return
			}
			if strings.Count(out, "\n") != 0 {
				t.Fatalf("want exactly one line per event, got %q", out)
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatalf("output %q is not one JSON record: %v", out, err)
			}
			if rec["level"] != tt.wantLevel || rec["msg"] != tt.wantMsg {
				t.Fatalf("record %v, want level %s msg %q", rec, tt.wantLevel, tt.wantMsg)
			}
			for k, v := range tt.wantAttrs {
				if rec[k] != v {
					t.Errorf("attr %s = %v, want %v (record %v)", k, rec[k], v, rec)
				}
			}
		})
	}
}

func TestUntaggedKeepsOnlyCallerAttributes(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil)).With("plugin", "p1")
	New(base, "").Named("keelson-plugin").Info("started", "pid", 7)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["plugin"] != "p1" || rec["pid"] != float64(7) || rec["component"] != nil {
		t.Fatalf("record %v", rec)
	}
}

func TestHCLogLevelFollowsHandler(t *testing.T) {
	l := New(slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn})), "raft")
	if l.IsDebug() || l.IsInfo() || !l.IsWarn() || !l.IsError() {
		t.Fatalf("IsDebug=%v IsInfo=%v IsWarn=%v IsError=%v for a warn-level handler",
			l.IsDebug(), l.IsInfo(), l.IsWarn(), l.IsError())
	}
}

func TestDroppedKeys(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil))
	New(base, "", "timestamp").With("timestamp", "x").Info("line", "timestamp", "0001-01-01T00:00:00.000Z", "n", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["timestamp"]; ok || rec["n"] != float64(1) {
		t.Fatalf("record %v: want n kept and timestamp dropped", rec)
	}
}
