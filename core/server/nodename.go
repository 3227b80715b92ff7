package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// checkNodeName pins the node name to the data dir on first start. The name
// is this server's raft ID and gossip name: starting the same raft state
// under another name would make it a stranger to its own cluster (and to
// itself), so a changed --node-name is refused instead.
func checkNodeName(dataDir, name string) error {
	path := filepath.Join(dataDir, "node-name")
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
			return fmt.Errorf("recording the node name in %s: %w", path, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if was := strings.TrimSpace(string(b)); was != name {
		return fmt.Errorf("nodeName (--node-name) %q differs from %q, the name this data dir (%s) was created with; a server keeps its name for life: pass --node-name %s, or start with a fresh --data-dir", name, was, dataDir, was)
	}
	return nil
}
