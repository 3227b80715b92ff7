package raftnode

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// walLog is the raft log kept in a hashicorp/raft-wal write-ahead log: each
// StoreLogs batch is one write and one fsync of a preallocated segment file
// (raft-boltdb fsyncs twice per batch, data pages then meta page).
//
// It covers two gaps of raft-wal v0.4.2. It serves entries below a head
// truncation (see GetLog). And a segment fills in the append that
// seals it, and the switch to the next segment (recorded in wal-meta.db)
// happens after that append returns. If the process dies between the two, or
// the switch fails (a full disk), raft-wal keeps the sealed segment as its
// tail and refuses every later append with ErrSealed, even after a restart.
// walLog completes such an interrupted switch when it opens the log (see
// finishRotation) and reopens the log when an append meets ErrSealed.
type walLog struct {
	dir         string
	segmentSize int
	log         hclog.Logger
	// faults, in tests, wrap raft-wal's files to make writes fail.
	faults walFaults

	// mu guards w: appends, reads and truncations hold it shared (raft-wal
	// is safe for concurrent use); a reopen holds it exclusively.
	mu sync.RWMutex
	w  *wal.WAL
}

var (
	_ raft.LogStore          = (*walLog)(nil)
	_ raft.MonotonicLogStore = (*walLog)(nil)
)

// openWALLog opens (or creates) the write-ahead log in dir, which must exist.
func openWALLog(dir string, segmentSize int, log hclog.Logger) (*walLog, error) {
	return openWALLogWith(dir, segmentSize, log, walFaults{})
}

// walFaults wrap raft-wal's metadata store and segment files, where set;
// tests make their writes fail with them, as a full disk does.
type walFaults struct {
	meta     func(types.MetaStore) types.MetaStore
	segments func(types.SegmentFiler) types.SegmentFiler
}

// openWALLogWith is openWALLog with faults.
func openWALLogWith(dir string, segmentSize int, log hclog.Logger, faults walFaults) (*walLog, error) {
	l := &walLog{dir: dir, segmentSize: segmentSize, log: log, faults: faults}
	w, err := l.open()
	if err != nil {
		return nil, err
	}
	l.w = w
	return l, nil
}

func (l *walLog) open() (*wal.WAL, error) {
	var inner types.MetaStore = &metadb.BoltMetaDB{}
	if l.faults.meta != nil {
		inner = l.faults.meta(inner)
	}
	meta := &rotationRepair{MetaStore: inner, segmentSize: l.segmentSize, log: l.log}
	var segments types.SegmentFiler = segment.NewFiler(l.dir, fs.New())
	if l.faults.segments != nil {
		segments = l.faults.segments(segments)
	}
	w, err := wal.Open(l.dir, wal.WithSegmentSize(l.segmentSize), wal.WithLogger(l.log), wal.WithMetaStore(meta),
		wal.WithSegmentFiler(segments))
	if err != nil {
		_ = meta.Close()
		return nil, fmt.Errorf("open raft log WAL in %s: %w", l.dir, err)
	}
	return w, nil
}

// current returns the open WAL, or why there is none (a reopen failed).
func (l *walLog) current() (*wal.WAL, error) {
	if l.w == nil {
		return nil, fmt.Errorf("raft log WAL in %s is closed after a failed reopen; it is retried on the next append", l.dir)
	}
	return l.w, nil
}

func (l *walLog) FirstIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	w, err := l.current()
	if err != nil {
		return 0, err
	}
	return w.FirstIndex()
}

func (l *walLog) LastIndex() (uint64, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	w, err := l.current()
	if err != nil {
		return 0, err
	}
	return w.LastIndex()
}

func (l *walLog) GetLog(index uint64, out *raft.Log) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	w, err := l.current()
	if err != nil {
		return err
	}
	// raft-wal serves entries of the tail segment below a head truncation
	// (it truncates segments, and the rest only in its metadata); a log
	// store must not, or raft would replicate entries it compacted away
	// instead of sending a snapshot.
	first, err := w.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	if err := w.GetLog(index, out); err != nil {
		if errors.Is(err, wal.ErrNotFound) {
			return raft.ErrLogNotFound
		}
		return err
	}
	return nil
}

func (l *walLog) StoreLog(entry *raft.Log) error { return l.StoreLogs([]*raft.Log{entry}) }

// StoreLogs appends entries durably: it returns after their fsync.
func (l *walLog) StoreLogs(entries []*raft.Log) error {
	err := l.storeLogs(entries)
	if err == nil || !errors.Is(err, wal.ErrSealed) && !l.closed() {
		return err
	}
	// The segment switch after the last sealing append failed: reopen,
	// which completes it, and append again. Nothing of this batch was
	// written (an append to a sealed segment writes nothing).
	if rerr := l.reopen(); rerr != nil {
		return fmt.Errorf("%w; reopening to finish the segment switch: %w", err, rerr)
	}
	return l.storeLogs(entries)
}

func (l *walLog) storeLogs(entries []*raft.Log) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	w, err := l.current()
	if err != nil {
		return err
	}
	return w.StoreLogs(entries)
}

func (l *walLog) closed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.w == nil
}

func (l *walLog) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w != nil {
		if err := l.w.Close(); err != nil {
			l.log.Warn("closing the raft log WAL before reopening it", "error", err)
		}
		l.w = nil
	}
	w, err := l.open()
	if err != nil {
		return err
	}
	l.w = w
	return nil
}

func (l *walLog) DeleteRange(lo, hi uint64) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	w, err := l.current()
	if err != nil {
		return err
	}
	return w.DeleteRange(lo, hi)
}

// IsMonotonic tells raft that the log cannot have gaps: after installing a
// snapshot raft empties it rather than leaving old entries below a gap.
func (l *walLog) IsMonotonic() bool { return true }

func (l *walLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w == nil {
		return nil
	}
	err := l.w.Close()
	l.w = nil
	return err
}

// rotationRepair is raft-wal's own metadata store (wal-meta.db) with one
// addition on Load: finishRotation.
type rotationRepair struct {
	types.MetaStore
	segmentSize int
	log         hclog.Logger
}

func (m *rotationRepair) Load(dir string) (types.PersistentState, error) {
	ps, err := m.MetaStore.Load(dir)
	if err != nil {
		return ps, err
	}
	fixed, sealed, err := finishRotation(dir, ps, m.segmentSize, time.Now())
	if err != nil || sealed == nil {
		return ps, err
	}
	if err := m.MetaStore.CommitState(fixed); err != nil {
		return ps, fmt.Errorf("record the switch from sealed segment %d: %w", sealed.ID, err)
	}
	m.log.Warn("finished an interrupted switch to a new WAL segment", "sealed_segment", sealed.ID,
		"last_index", sealed.MaxIndex, "new_segment", fixed.NextSegmentID-1)
	return fixed, nil
}

// finishRotation completes a segment switch that the metadata does not
// record although the tail segment's file is sealed: it marks the tail sealed
// (as raft-wal's rotation does: seal time, last index, index offset) and adds
// an empty tail after it. sealed is the segment it sealed, nil when the
// metadata was already consistent.
func finishRotation(dir string, ps types.PersistentState, segmentSize int, now time.Time) (types.PersistentState, *types.SegmentInfo, error) {
	n := len(ps.Segments)
	if n == 0 || !ps.Segments[n-1].SealTime.IsZero() {
		return ps, nil, nil
	}
	tail := ps.Segments[n-1]
	sw, err := segment.NewFiler(dir, fs.New()).RecoverTail(tail)
	if errors.Is(err, os.ErrNotExist) {
		return ps, nil, nil // created on open
	}
	if err != nil {
		return ps, nil, fmt.Errorf("inspect tail segment %d: %w", tail.ID, err)
	}
	sealedFile, indexStart, err := sw.Sealed()
	last := sw.LastIndex()
	if cerr := sw.Close(); err == nil {
		err = cerr
	}
	if err != nil || !sealedFile {
		return ps, nil, err
	}
	tail.SealTime = now
	tail.MaxIndex = last
	tail.IndexStart = indexStart
	next := types.SegmentInfo{
		ID: ps.NextSegmentID, BaseIndex: last + 1, MinIndex: last + 1,
		SizeLimit: uint32(segmentSize), Codec: wal.CodecBinaryV1, CreateTime: now,
	}
	fixed := types.PersistentState{NextSegmentID: ps.NextSegmentID + 1}
	fixed.Segments = append(append(fixed.Segments, ps.Segments[:n-1]...), tail, next)
	return fixed, &tail, nil
}
