package server

import (
	"log/slog"
	"os"
	"runtime/debug"
)

// gcPercent decides the server's GOGC: the configured target, unless the
// GOGC environment variable (env) is set, which Go has already applied and
// an operator set for this run. It reports whether to apply the target; a
// configuration that was never validated (0, a test's literal) leaves Go's
// own default, since SetGCPercent(0) would collect without pause.
func gcPercent(configured int, env string) (int, bool) {
	if env != "" || configured <= 0 {
		return 0, false
	}
	return configured, true
}

// applyGCPercent sets the process's garbage collection target from the
// configuration (config.Server.GOGC explains the default).
func applyGCPercent(configured int, log *slog.Logger) {
	env := os.Getenv("GOGC")
	switch pct, ok := gcPercent(configured, env); {
	case ok:
		debug.SetGCPercent(pct)
	case env != "":
		log.Info("garbage collection target from the GOGC environment variable, not gogc (--gogc)", "GOGC", env, "gogc", configured)
	}
}
