package serfpool

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// serf and memberlist log through a standard *log.Logger with lines like
// "[WARN] memberlist: Refuting a suspect message (from: x)". logBridge turns
// each line into one slog record with the level and component parsed out.
type logBridge struct {
	l *slog.Logger
}

func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(logBridge{l: l}, "", 0)
}

// tokenHint is attached to log lines that mean a peer used another key.
const tokenHint = "a node with a different cluster token (--token) is talking to this pool; the cluster token is probably wrong"

func (b logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level, msg := slog.LevelInfo, line
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			level = parseLevel(line[1:end])
			msg = strings.TrimSpace(line[end+1:])
		}
	}
	component := "serf"
	if i := strings.Index(msg, ": "); i > 0 && !strings.Contains(msg[:i], " ") {
		component, msg = msg[:i], msg[i+2:]
	}
	attrs := []any{"component", component}
	if strings.Contains(msg, "No installed keys could decrypt") {
		attrs = append(attrs, "hint", tokenHint)
	}
	b.l.Log(context.Background(), level, msg, attrs...)
	return len(p), nil
}

func parseLevel(s string) slog.Level {
	switch s {
	case "TRACE":
		return slog.LevelDebug - 4
	case "DEBUG":
		return slog.LevelDebug
	case "WARN":
		return slog.LevelWarn
	case "ERR", "ERROR":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
