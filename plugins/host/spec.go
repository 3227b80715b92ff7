package host

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keelson/keelson/internal/pluginbin"
)

// Spec says how to launch one plugin.
type Spec struct {
	// Name identifies the plugin in status, logs and its API identity.
	Name string
	// Path is the executable; Args follow it.
	Path string
	Args []string
	// Builtin marks a plugin built with keelson (served by the keelson
	// binary itself or by the keelson-plugins executable embedded in it),
	// trusted like the host.
	Builtin bool
	// SHA256 is the hex checksum the executable must match; the host
	// refuses to start it otherwise. Required for a third-party plugin;
	// for a built-in, set when it runs from the extracted keelson-plugins
	// executable (empty: the running keelson binary).
	SHA256 string
	// Config is the plugin's section of the server configuration (JSON).
	Config json.RawMessage
	// Env is the plugin process's environment, KEY=VALUE (the Go
	// runtime's GOMEMLIMIT and GOGC); nothing of the host's is inherited.
	Env []string
	// Disabled plugins are listed in Status but never started.
	Disabled bool
}

// BuiltinBinary is the executable that serves built-in plugins: the host
// runs `Path Prefix... NAME` for built-in plugin NAME.
type BuiltinBinary struct {
	Path   string
	Prefix []string
	// SHA256 pins Path: the host checks it before every start. Empty for
	// the running keelson binary, which is trusted as the host is.
	SHA256 string
	// Lacks are built-ins Path does not serve; they, and a group with one
	// of them, run from the running keelson binary (SelfBinary). The
	// server sets it (multicall.ServedByKeelson).
	Lacks []string
}

// SelfBinary serves built-in plugins by re-executing the running binary as
// `keelson plugin NAME`: every plugin process then carries all of keelson.
func SelfBinary() (BuiltinBinary, error) {
	exe, err := os.Executable()
	if err != nil {
		return BuiltinBinary{}, fmt.Errorf("built-in plugins: locating the keelson binary: %w", err)
	}
	return BuiltinBinary{Path: exe, Prefix: []string{"plugin"}}, nil
}

// ResolveBuiltinBinary picks the executable for built-in plugins: the
// keelson-plugins executable embedded by `make build`, extracted under
// dataDir/bin, or, in a keelson built without it, the running binary.
func ResolveBuiltinBinary(dataDir string) (BuiltinBinary, error) {
	return resolveBuiltinBinary(dataDir, pluginbin.Embedded)
}

func resolveBuiltinBinary(dataDir string, embedded func() (pluginbin.Archive, bool)) (BuiltinBinary, error) {
	a, ok := embedded()
	if !ok {
		return SelfBinary()
	}
	path, err := pluginbin.Extract(filepath.Join(dataDir, "bin"), a)
	if err != nil {
		return BuiltinBinary{}, err
	}
	return BuiltinBinary{Path: path, SHA256: a.SHA256}, nil
}

// serving is the binary that serves every one of names: b, or the running
// keelson binary when b lacks one of them.
func (b BuiltinBinary) serving(names ...string) BuiltinBinary {
	for _, n := range names {
		if slices.Contains(b.Lacks, n) {
			if self, err := SelfBinary(); err == nil {
				return self
			}
		}
	}
	return b
}

// BuiltinSpec launches built-in plugin name from b, as a process of its own.
func BuiltinSpec(b BuiltinBinary, name string, config json.RawMessage) Spec {
	b = b.serving(name)
	args := append(slices.Clone(b.Prefix), name)
	return Spec{Name: name, Path: b.Path, Args: args, Builtin: true, SHA256: b.SHA256, Config: config}
}

// ThirdPartySpec launches the executable file in dir, which must have the
// given SHA-256 checksum.
func ThirdPartySpec(name, dir, file, sha256Hex string, config json.RawMessage) Spec {
	return Spec{Name: name, Path: filepath.Join(dir, file), SHA256: sha256Hex, Config: config}
}

func (s Spec) validate() error {
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("plugin %s: environment entry %q is not KEY=VALUE", s.Name, kv)
		}
	}
	switch {
	case s.Name == "":
		return fmt.Errorf("plugin spec with path %q has no name", s.Path)
	case s.Path == "":
		return fmt.Errorf("plugin %s: no executable path", s.Name)
	case len(s.Config) > 0 && !json.Valid(s.Config):
		return fmt.Errorf("plugin %s: config section is not valid JSON", s.Name)
	}
	return nil
}

// checksum returns the expected digest, refusing a third-party plugin
// without one: running unverified code as the leader is never a default.
func (s Spec) checksum() ([]byte, error) {
	if s.Builtin && s.SHA256 == "" {
		return nil, nil
	}
	if s.SHA256 == "" {
		return nil, fmt.Errorf("plugin %s: third-party executable %s has no sha256 configured; add its checksum (sha256sum %s) to the plugin's config",
			s.Name, s.Path, s.Path)
	}
	sum, err := hex.DecodeString(s.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("plugin %s: sha256 %q is not 64 hex digits", s.Name, s.SHA256)
	}
	return sum, nil
}

// fileSHA256 hashes path for the refusal message.
func fileSHA256(path string) (string, error) { return pluginbin.FileSHA256(path) }
