package host

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Spec says how to launch one plugin.
type Spec struct {
	// Name identifies the plugin in status, logs and its API identity.
	Name string
	// Path is the executable; Args follow it.
	Path string
	Args []string
	// Builtin marks a plugin compiled into the keelson binary itself, which
	// is trusted like the host and needs no checksum.
	Builtin bool
	// SHA256 is the hex checksum a third-party executable must match; the
	// host refuses to start it otherwise.
	SHA256 string
	// Config is the plugin's section of the server configuration (JSON).
	Config json.RawMessage
	// Disabled plugins are listed in Status but never started.
	Disabled bool
}

// BuiltinSpec launches a built-in plugin by re-executing the running binary
// as `keelson plugin NAME`, so it is still a separate process.
func BuiltinSpec(name string, config json.RawMessage) (Spec, error) {
	exe, err := os.Executable()
	if err != nil {
		return Spec{}, fmt.Errorf("built-in plugin %s: locating the keelson binary: %w", name, err)
	}
	return Spec{Name: name, Path: exe, Args: []string{"plugin", name}, Builtin: true, Config: config}, nil
}

// ThirdPartySpec launches the executable file in dir, which must have the
// given SHA-256 checksum.
func ThirdPartySpec(name, dir, file, sha256Hex string, config json.RawMessage) Spec {
	return Spec{Name: name, Path: filepath.Join(dir, file), SHA256: sha256Hex, Config: config}
}

func (s Spec) validate() error {
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
	if s.Builtin {
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
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
