// Package hclogbridge turns slog into an hclog.Logger, so libraries that log
// through hclog (hashicorp/raft, go-plugin) write one structured record per
// event into the process's own slog stream.
package hclogbridge

import (
	"context"
	"io"
	"log"
	"log/slog"
	"slices"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is an hclog.Logger that writes to slog.
type hclogAdapter struct {
	// base is the caller's logger; l is base plus component and implied
	// attributes. slog cannot remove attributes, so ResetNamed rebuilds l
	// from base.
	base    *slog.Logger
	l       *slog.Logger
	name    string
	implied []any
	level   hclog.Level
	drop    []string // keys left out of every record
}

// New returns an hclog.Logger writing to l. A non-empty component tags every
// record component=<component> (sub-loggers: component=<component>.<name>);
// with an empty one, records carry only l's own attributes and sub-logger
// names are dropped (go-plugin names its loggers after executables, which
// says nothing a reader needs when l is already tagged plugin=<name>).
// Attributes with a key in drop are left out of every record.
func New(l *slog.Logger, component string, drop ...string) hclog.Logger {
	a := &hclogAdapter{base: l, l: l, name: component, level: hclog.Debug, drop: drop}
	if component != "" {
		a.l = l.With("component", component)
	}
	return a
}

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || (level != hclog.NoLevel && level < a.level) {
		return
	}
	a.l.Log(context.Background(), slogLevel(level), msg, normalizeArgs(args, a.drop)...)
}

// normalizeArgs keeps hclog's key/value pairs valid slog attributes: hclog
// tolerates a trailing lone value and non-string keys, slog would print
// !BADKEY. Pairs whose key is in drop are left out.
func normalizeArgs(args []any, drop []string) []any {
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			out = append(out, "EXTRA_VALUE", args[i])
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = "BADKEY"
		}
		if slices.Contains(drop, key) {
			continue
		}
		val := args[i+1]
		if err, ok := val.(error); ok {
			val = err.Error()
		}
		out = append(out, key, val)
	}
	return out
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return l >= a.level && a.l.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.implied = append(append([]any(nil), a.implied...), args...)
	c.l = a.l.With(normalizeArgs(args, a.drop)...)
	return &c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	if a.name == "" {
		c.l = a.base.With(normalizeArgs(a.implied, a.drop)...)
		return &c
	}
	c.name = name
	c.l = a.base.With("component", name).With(normalizeArgs(a.implied, a.drop)...)
	return &c
}

func (a *hclogAdapter) SetLevel(level hclog.Level) { a.level = level }
func (a *hclogAdapter) GetLevel() hclog.Level      { return a.level }

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return slog.NewLogLogger(a.l.Handler(), slog.LevelInfo).Writer()
}
