package kvserver

import (
	"errors"
	"io"
	"log/slog"

	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
)

// Machine adapts an fsm.Store to raftnode.StateMachine. It lives beside the
// code that consumes its results: propose reads the fsm.Result that Apply
// returns through raft.
type Machine struct {
	Store *fsm.Store
	Log   *slog.Logger
}

// Apply applies one command. A command type this build does not know halts
// the node (raftnode stops applying) instead of being skipped: only a newer
// server can have proposed it, and skipping it would diverge from every
// server that applied it. A malformed command of a known type is refused
// the same way on every server, so it is only logged.
func (m Machine) Apply(index, term uint64, cmd []byte) (any, error) {
	res := m.Store.ApplyEntry(index, term, cmd)
	if errors.Is(res.Err, fsm.ErrUnknownCommand) {
		return nil, res.Err
	}
	if errors.Is(res.Err, fsm.ErrBadCommand) && m.Log != nil {
		m.Log.Error("raft log entry refused by the state machine", "index", index, "err", res.Err)
	}
	return res, nil
}

// Snapshot returns the current view, which streams itself.
func (m Machine) Snapshot() (raftnode.SnapshotWriter, error) { return m.Store.View(), nil }

// Restore replaces the store with a snapshot.
func (m Machine) Restore(r io.Reader) error { return m.Store.Restore(r) }
