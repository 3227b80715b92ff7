package serfpool

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keelson/keelson/internal/join"
)

const (
	// TokenFile is the name of the cluster token file in the data dir.
	TokenFile = "token"

	// minTokenLen keeps a hand-picked token from being guessable: the
	// gossip key is only as strong as the token it is derived from.
	minTokenLen = 16

	// gossipKeyInfo separates the gossip key from any other key derived
	// from the same token; bump the version to rotate every cluster's key.
	gossipKeyInfo = "keelson membership gossip key v1"
	gossipKeySalt = "keelson-cluster-token"
)

// LoadOrCreateToken returns the cluster token for the server or agent whose
// data dir is dataDir. With no stored token it stores given, or a new random
// one when given is empty (the first server of a cluster), in
// dataDir/token with mode 0600. With a stored token, given must be empty or
// equal to it: a server's token cannot change under it.
func LoadOrCreateToken(dataDir, given string) (string, error) {
	if dataDir == "" {
		return "", errors.New("membership: token: data dir is empty")
	}
	path := filepath.Join(dataDir, TokenFile)
	stored, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := string(bytes.TrimSpace(stored))
		if err := checkToken(tok); err != nil {
			return "", fmt.Errorf("membership: token file %s: %w; restore it from another server or remove it and pass --token", path, err)
		}
		if given != "" && given != tok {
			return "", fmt.Errorf("membership: --token differs from the cluster token stored in %s: "+
				"pass the stored token (or no --token), or, if this node should join another cluster, "+
				"remove %s together with the rest of its data dir", path, dataDir)
		}
		return tok, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", fmt.Errorf("membership: read token file: %w", err)
	}
	// Only a new token is held to the entropy rule: a cluster created
	// before it keeps working with the token it has.
	tok := given
	if tok != "" {
		if err := join.CheckSecret(tok, "token (--token)"); err != nil {
			return "", err
		}
	} else if tok, err = join.GenerateSecret(); err != nil {
		return "", fmt.Errorf("membership: %w", err)
	}
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("membership: store token: %w", err)
	}
	return tok, nil
}

// checkToken is the rule for a stored token: long enough and printable.
func checkToken(tok string) error {
	if len(tok) < minTokenLen {
		return fmt.Errorf("membership: the token is %d characters, want at least %d", len(tok), minTokenLen)
	}
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return errors.New("membership: --token must not contain spaces or control characters")
	}
	return nil
}

// GossipKey derives the 32-byte AES-256 serf keyring key from the cluster
// token with HKDF-SHA-256. Every member derives the same key from the same
// token, so the token alone admits a node to the pool.
func GossipKey(token string) ([]byte, error) {
	if token == "" {
		return nil, errors.New("membership: empty cluster token")
	}
	key, err := hkdf.Key(sha256.New, []byte(token), []byte(gossipKeySalt), gossipKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("membership: derive gossip key: %w", err)
	}
	return key, nil
}

// writeFileAtomic writes data to path via a temporary file and rename, so a
// crash never leaves a truncated token behind.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
