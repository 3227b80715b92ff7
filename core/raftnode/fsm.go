package raftnode

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// StateMachine is what raft applies. The caller adapts fsm.Store to it.
type StateMachine interface {
	// Apply applies one committed command. It must be deterministic; its
	// result is returned to the proposer by Node.Apply. A non-nil error
	// means the state machine cannot apply this entry at all (a command
	// type it does not know): the node then stops applying (Node.Halted)
	// rather than skip the entry and diverge from the servers that can.
	// Semantic failures of a known command belong in the result.
	// term is the term of the log entry (the leader's that appended it).
	Apply(index, term uint64, cmd []byte) (any, error)
	// Snapshot returns an immutable view of the current state. It is called
	// on raft's FSM goroutine and must be O(1); the write happens later,
	// concurrently with further applies.
	Snapshot() (SnapshotWriter, error)
	// Restore replaces all state with the snapshot read from r.
	Restore(r io.Reader) error
}

// SnapshotWriter streams a snapshot taken by StateMachine.Snapshot. The
// method is named after fsm.View.WriteSnapshot so a *fsm.View satisfies it
// as is (and so vet does not confuse it with io.WriterTo).
type SnapshotWriter interface {
	WriteSnapshot(w io.Writer) error
}

// fsmAdapter turns a StateMachine into a raft.FSM and tracks the index the
// state machine has applied, which is what reads wait on.
type fsmAdapter struct {
	sm StateMachine

	mu      sync.Mutex
	applied uint64
	// lastOpened is the index of the snapshot raft most recently opened; see
	// Restore.
	lastOpened uint64
	// changed is closed whenever applied moves, waking every WaitApplied
	// caller without a per-waiter registry. It is nil while nobody waits,
	// so an apply nobody waits for (every write on the leader) allocates no
	// channel; a waiter makes it (changedLocked).
	changed chan struct{}

	results heldResults

	// version is this node's Config.Version, for HaltError.
	version string
	// haltErr is set, and halted closed, when the state machine refused an
	// entry; from then on nothing is applied, snapshotted or restored.
	haltErr *HaltError
	halted  chan struct{}
}

func newFSMAdapter(sm StateMachine, version string) *fsmAdapter {
	return &fsmAdapter{sm: sm, results: newHeldResults(), version: version, halted: make(chan struct{})}
}

// Apply is called by raft for LogCommand entries only: raft filters barrier,
// no-op and configuration entries before the FSM (configuration entries go
// to ConfigurationStore, which this adapter does not implement).
//
// Once the state machine refused an entry, every later entry is refused
// too and the applied index stays below the refused one, so nothing reads
// a state that skipped it, and no snapshot claims to cover it: after an
// upgrade and restart the entry is replayed from the log.
func (f *fsmAdapter) Apply(l *raft.Log) any {
	if err := f.haltError(); err != nil {
		return err
	}
	var res any
	if l.Type == raft.LogCommand {
		var err error
		if res, err = f.sm.Apply(l.Index, l.Term, l.Data); err != nil {
			return f.halt(l, err)
		}
	}
	f.mu.Lock()
	// The result is held before applied moves, so a forwarder woken by the
	// move finds it.
	if l.Type == raft.LogCommand {
		f.results.record(l.Index, res)
	}
	f.setAppliedLocked(l.Index)
	f.mu.Unlock()
	return res
}

func (f *fsmAdapter) haltError() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.haltErr == nil {
		return nil // not a typed nil: callers compare with nil
	}
	return f.haltErr
}

// halt records why the state machine stopped and wakes everyone waiting.
func (f *fsmAdapter) halt(l *raft.Log, err error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.haltErr = &HaltError{Index: l.Index, Writer: string(l.Extensions), Self: f.version, Err: err}
	close(f.halted)
	return f.haltErr
}

// holdResults makes the adapter keep the result of every command applied
// from now on until release is called; see heldResults.
func (f *fsmAdapter) holdResults() (release func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	floor := f.applied
	f.results.hold(floor)
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.results.release(floor)
		})
	}
}

// takeResult returns the state machine's result for the command at index,
// if it is held.
func (f *fsmAdapter) takeResult(index uint64) (any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.results.take(index)
}

func (f *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.haltError(); err != nil {
		return nil, fmt.Errorf("no snapshot of a halted state machine: %w", err)
	}
	w, err := f.sm.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("state machine snapshot: %w", err)
	}
	return &fsmSnapshot{w: w}, nil
}

// Restore replaces the state machine with a snapshot. raft.FSM.Restore is
// not told the snapshot's index, so indexTrackingStore records the index of
// the snapshot raft opened just before calling Restore (at startup and in
// raft's FSM goroutine, raft opens and then restores on the same goroutine)
// and Restore publishes it as applied. The leader also opens snapshots to
// send them to followers; that can only race with an operator-initiated
// restore on the leader, where it could record the wrong index until the
// next apply.
func (f *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.haltError(); err != nil {
		return fmt.Errorf("no restore into a halted state machine: %w", err)
	}
	if err := f.sm.Restore(rc); err != nil {
		return fmt.Errorf("state machine restore: %w", err)
	}
	f.mu.Lock()
	index := f.lastOpened
	f.mu.Unlock()
	f.setApplied(index)
	return nil
}

// noteOpened records the index of a snapshot opened for reading.
func (f *fsmAdapter) noteOpened(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastOpened = index
}

// setApplied advances the applied index; it never moves it backwards, because
// an index learned from a completed barrier can be ahead of the last command.
func (f *fsmAdapter) setApplied(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setAppliedLocked(index)
}

func (f *fsmAdapter) setAppliedLocked(index uint64) {
	if index <= f.applied {
		return
	}
	f.applied = index
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// changedLocked returns the channel closed when applied next moves.
func (f *fsmAdapter) changedLocked() chan struct{} {
	if f.changed == nil {
		f.changed = make(chan struct{})
	}
	return f.changed
}

func (f *fsmAdapter) appliedIndex() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// appliedPoll is how often waitApplied re-checks covered when the state
// machine does not move: entries that are not commands (no-ops, barriers,
// configuration changes) never reach the adapter, so nothing wakes us when
// raft applies them.
const appliedPoll = 2 * time.Millisecond

// waitApplied blocks until applied >= index or covered(index, applied)
// reports that every entry in (applied, index] has no effect on the state
// machine; or until ctx ends or stop is closed.
func (f *fsmAdapter) waitApplied(ctx context.Context, stop <-chan struct{}, index uint64,
	covered func(index, applied uint64) bool) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		f.mu.Lock()
		applied := f.applied
		var changed chan struct{}
		if applied < index {
			changed = f.changedLocked()
		}
		f.mu.Unlock()
		if applied >= index || covered(index, applied) {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(appliedPoll)
		} else {
			timer.Reset(appliedPoll)
		}
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			return fmt.Errorf("wait for applied index %d (at %d): %w", index, applied, context.Cause(ctx))
		case <-stop:
			return fmt.Errorf("wait for applied index %d (at %d): %w", index, applied, ErrShutdown)
		case <-f.halted:
			return fmt.Errorf("wait for applied index %d (at %d): %w", index, applied, f.haltError())
		}
	}
}

type fsmSnapshot struct{ w SnapshotWriter }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.w.WriteSnapshot(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot %s: %w", sink.ID(), err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot %s: %w", sink.ID(), err)
	}
	return nil
}

func (s *fsmSnapshot) Release() {}

// indexTrackingStore is a raft.SnapshotStore that tells the adapter which
// snapshot is about to be restored.
type indexTrackingStore struct {
	raft.SnapshotStore
	fsm *fsmAdapter
}

func (s *indexTrackingStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, fmt.Errorf("open snapshot %s: %w", id, err)
	}
	s.fsm.noteOpened(meta.Index)
	return meta, rc, nil
}
