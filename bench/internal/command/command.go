// Package command runs a benchmark binary's main: flags, signals and exit
// codes, the same for every benchmark.
package command

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main parses args with parse, then runs run with a context that SIGINT and
// SIGTERM cancel, and returns the exit code: 0 on success or -help, 2 for
// bad flags, 1 when run fails. Errors go to stderr prefixed with name.
func Main[O any](name string, args []string, stderr io.Writer,
	parse func(args []string, stderr io.Writer) (O, error),
	run func(context.Context, O) error) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return 1
	}
	return 0
}
