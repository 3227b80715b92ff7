package command

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestMainExitCodes(t *testing.T) {
	parse := func(args []string, stderr io.Writer) (string, error) {
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fail := fs.Bool("fail", false, "make the run fail")
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if *fail {
			return "fail", nil
		}
		return "ok", nil
	}
	run := func(ctx context.Context, o string) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if o == "fail" {
			return errors.New("server exited")
		}
		return nil
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"success", nil, 0, ""},
		{"help", []string{"-help"}, 0, "Usage of bench"},
		{"bad flag", []string{"-nope"}, 2, "bench: flag provided but not defined: -nope"},
		{"run fails", []string{"-fail"}, 1, "bench: server exited\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := Main("bench", tt.args, &stderr, parse, run)
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) || (tt.wantStderr == "" && stderr.Len() > 0) {
				t.Errorf("Main(%q) = %d with stderr %q; want %d with %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantStderr)
			}
		})
	}
}
