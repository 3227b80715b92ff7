package fsm

import (
	"encoding/binary"
	"fmt"
)

// A plugin of the raft leader of term N writes as that term's plugin (its
// identity carries N; core/apiserver's fence refuses it once a server knows
// a newer term). That check runs before the write is proposed, so on its
// own it leaves a window: a leader that has just stepped down, and has not
// heard of the new term yet, admits its plugin's write and forwards it to
// the new leader, which commits it in its own term. Wrapping the write in
// CmdFenced closes the window where it cannot be raced: every server
// applies the command only from a log entry of term N. An entry of term N
// is one the leader of term N appended, so the write commits in its
// plugin's term or not at all.

// fenceHeader is CmdFenced's type byte and 8-byte term.
const fenceHeader = 1 + 8

// Fence wraps cmd so that it applies only from a log entry of term term.
func Fence(term uint64, cmd []byte) []byte {
	out := make([]byte, fenceHeader, fenceHeader+len(cmd))
	out[0] = CmdFenced
	binary.BigEndian.PutUint64(out[1:fenceHeader], term)
	return append(out, cmd...)
}

// unfence returns the command cmd carries when it is fenced and entryTerm
// is its term, cmd itself when it is not fenced, or ErrFenced (or
// ErrBadCommand) when it must not apply. It is deterministic: the same
// entry gives the same answer on every server.
func unfence(cmd []byte, entryTerm uint64) ([]byte, error) {
	if len(cmd) == 0 || cmd[0] != CmdFenced {
		return cmd, nil
	}
	if len(cmd) <= fenceHeader || cmd[fenceHeader] == CmdFenced {
		return nil, fmt.Errorf("%w: fenced command of %d bytes (a term and one unfenced command expected)", ErrBadCommand, len(cmd))
	}
	term := binary.BigEndian.Uint64(cmd[1:fenceHeader])
	if term != entryTerm {
		return nil, fmt.Errorf("%w: written for raft term %d, committed in term %d (the leader of term %d was deposed; its plugins are restarted by the new leader)", ErrFenced, term, entryTerm, term)
	}
	return cmd[fenceHeader:], nil
}
