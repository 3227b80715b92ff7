// Package report holds what the benchmarks' reports share: the machine they
// ran on, the printed notes, and the -json file.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
)

// Machine is where the figures were taken. Embedded first in a report, its
// fields lead the JSON document.
type Machine struct {
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	CPUs      int    `json:"cpus"`
}

// ThisMachine describes the running binary and machine.
func ThisMachine() Machine {
	return Machine{
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
	}
}

// PrintNotes writes one indented "- note" line per note, then a blank line.
func PrintNotes(out io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(out, "  -", n)
	}
	fmt.Fprintln(out)
}

// WriteJSON writes v, indented, to the file named by the -json flag.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode figures: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write -json %s: %w", path, err)
	}
	return nil
}
