package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The raft log stores a server can use (Config.LogStore). raft.db (bbolt)
// is the stable store (term, vote) either way.
const (
	// LogStoreWAL keeps the log in DataDir/wal, a segmented write-ahead log
	// (hashicorp/raft-wal) with one fsync per batch of entries.
	LogStoreWAL = "wal"
	// LogStoreBoltDB keeps the log in raft.db beside the stable store,
	// as every server did before LogStoreWAL; a commit fsyncs twice.
	LogStoreBoltDB = "boltdb"
)

const (
	raftDBName = "raft.db"
	walDirName = "wal"
	// copyBatch is how many entries a migration moves per write.
	copyBatch = 512
)

// logStoreKey records, in raft.db's stable store, which store holds the
// log. It is written only once that store holds every entry, so a crash
// during a migration leaves the old store authoritative and the move is
// redone on the next start. A data dir without it predates
// Config.LogStore: raft.db holds its log, if any.
var logStoreKey = []byte("keelson.raft-log-store")

// openStores opens raft.db (the stable store) and the log Config.LogStore
// names, behind raft's log cache.
func (n *Node) openStores(hl hclog.Logger) error {
	bolt, err := openRaftDB(n.cfg.DataDir)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("%w: is another keelson server running on this data dir?", err)
	}
	if err != nil {
		return err
	}
	n.bolt = bolt
	logs, w, err := openLog(n.cfg, bolt, n.log, hl.Named("wal"))
	if err != nil {
		return err
	}
	n.wal = w
	if n.cfg.wrapLogStore != nil {
		logs = n.cfg.wrapLogStore(logs)
	}
	if n.logs, err = raft.NewLogCache(logCacheSize, logs); err != nil {
		return fmt.Errorf("raftnode: log cache: %w", err)
	}
	return nil
}

// openRaftDB opens dir's raft.db. Another process holding it makes it fail
// within a second with an error wrapping bbolt's ErrTimeout, instead of
// blocking on bbolt's file lock; raft.db is opened before the WAL, whose
// own lock has no timeout.
func openRaftDB(dir string) (*raftboltdb.BoltStore, error) {
	path := filepath.Join(dir, raftDBName)
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path: path,
		// NoFreelistSync: the freelist is rebuilt on open instead of being
		// written on every commit, which saves a page write per commit.
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true},
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("raftnode: %s is locked by another process (%w)", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("raftnode: open %s: %w", path, err)
	}
	return bolt, nil
}

// OfflineStores are a stopped server's raft stores, for operator commands
// that work on its data dir directly (cluster-reset).
type OfflineStores struct {
	// Stable is raft.db: term and vote.
	Stable *raftboltdb.BoltStore
	// Log is the raft log, in whichever store holds it.
	Log raft.LogStore
	wal *walLog
}

// OpenOffline opens the raft stores in dir (a server's Config.DataDir) as
// they are: the log where the data dir keeps it, nothing moved. It fails
// with an error wrapping bbolt's ErrTimeout when a server holds them.
func OpenOffline(dir string) (*OfflineStores, error) {
	bolt, err := openRaftDB(dir)
	if err != nil {
		return nil, err
	}
	walDir := filepath.Join(dir, walDirName)
	holder, err := logHolder(bolt, walDir)
	if err != nil {
		_ = bolt.Close()
		return nil, err
	}
	if holder != LogStoreWAL {
		return &OfflineStores{Stable: bolt, Log: bolt}, nil
	}
	w, err := openWALLog(walDir, DefaultConfig().WALSegmentSize, hclog.NewNullLogger())
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	return &OfflineStores{Stable: bolt, Log: w, wal: w}, nil
}

// Close closes the stores.
func (s *OfflineStores) Close() error {
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	return errors.Join(append(errs, s.Stable.Close())...)
}

// openLog returns the raft log in the store cfg.LogStore names, first moving
// the entries there if the other store holds them (an existing data dir
// after the option changed, or one from before it existed).
func openLog(cfg Config, bolt *raftboltdb.BoltStore, log *slog.Logger, hl hclog.Logger) (raft.LogStore, *walLog, error) {
	walDir := filepath.Join(cfg.DataDir, walDirName)
	holder, err := logHolder(bolt, walDir)
	if err != nil {
		return nil, nil, err
	}
	// A copy that never became authoritative.
	if err := os.RemoveAll(walDir + ".tmp"); err != nil {
		return nil, nil, fmt.Errorf("raftnode: remove unfinished WAL copy: %w", err)
	}
	var (
		w      *walLog
		reason string
	)
	switch {
	case cfg.LogStore == LogStoreBoltDB && holder == LogStoreWAL:
		reason, err = moveWALToBolt(walDir, bolt, cfg.WALSegmentSize, hl)
	case cfg.LogStore == LogStoreBoltDB:
		reason, err = keepBolt(holder, walDir, bolt)
	case holder == LogStoreBoltDB:
		w, reason, err = moveBoltToWAL(walDir, bolt, cfg.WALSegmentSize, hl)
	default:
		w, reason, err = keepWAL(holder, walDir, bolt, cfg.WALSegmentSize, hl)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("raftnode: raft log store %s in %s: %w", cfg.LogStore, cfg.DataDir, err)
	}
	log.Info("raft log store", "store", cfg.LogStore, "reason", reason)
	if w != nil {
		return w, w, nil
	}
	return bolt, nil, nil
}

// logHolder says which store holds the log: the recorded one, else raft.db
// if it has entries, else none ("").
func logHolder(bolt *raftboltdb.BoltStore, walDir string) (string, error) {
	v, err := bolt.Get(logStoreKey)
	switch {
	case err == nil && (string(v) == LogStoreWAL || string(v) == LogStoreBoltDB):
		if string(v) == LogStoreWAL {
			if _, err := os.Stat(walDir); err != nil {
				return "", fmt.Errorf("raftnode: raft.db records the raft log in %s, which cannot be read (%w); restore the data dir from a backup", walDir, err)
			}
		}
		return string(v), nil
	case err == nil:
		return "", fmt.Errorf("raftnode: raft.db records the raft log in an unknown store %q; a newer keelson wrote this data dir", v)
	case !errors.Is(err, raftboltdb.ErrKeyNotFound):
		return "", fmt.Errorf("raftnode: read %s from raft.db: %w", logStoreKey, err)
	}
	last, err := bolt.LastIndex()
	if err != nil {
		return "", fmt.Errorf("raftnode: read the last index of raft.db: %w", err)
	}
	if last > 0 {
		return LogStoreBoltDB, nil
	}
	return "", nil
}

func keepBolt(holder, walDir string, bolt *raftboltdb.BoltStore) (string, error) {
	// Left by a move to the WAL that did not finish: never authoritative.
	if err := os.RemoveAll(walDir); err != nil {
		return "", fmt.Errorf("remove unfinished WAL %s: %w", walDir, err)
	}
	if err := bolt.Set(logStoreKey, []byte(LogStoreBoltDB)); err != nil {
		return "", fmt.Errorf("record the log store in raft.db: %w", err)
	}
	if holder == "" {
		return "configured; new log", nil
	}
	return "configured; the data dir's log is in raft.db", nil
}

func keepWAL(holder, walDir string, bolt *raftboltdb.BoltStore, segmentSize int, hl hclog.Logger) (*walLog, string, error) {
	if holder == LogStoreWAL {
		// Stale copies left by a move to the WAL that stopped after
		// recording it; the WAL holds them all.
		if err := clearLog(bolt); err != nil {
			return nil, "", fmt.Errorf("drop raft.db's copy of the log: %w", err)
		}
		w, err := openWALLog(walDir, segmentSize, hl)
		return w, "configured; the data dir's log is in the WAL", err
	}
	// A new log. Create it complete, then record it: a WAL without the
	// record is unfinished and removed on the next start.
	if err := os.RemoveAll(walDir); err != nil {
		return nil, "", fmt.Errorf("remove unfinished WAL %s: %w", walDir, err)
	}
	if err := os.Mkdir(walDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create %s: %w", walDir, err)
	}
	w, err := openWALLog(walDir, segmentSize, hl)
	if err != nil {
		return nil, "", err
	}
	if err := bolt.Set(logStoreKey, []byte(LogStoreWAL)); err != nil {
		_ = w.Close()
		return nil, "", fmt.Errorf("record the log store in raft.db: %w", err)
	}
	return w, "configured; new log", nil
}

// moveBoltToWAL copies raft.db's log into a new WAL beside the final one,
// renames it into place, records it, and only then drops raft.db's copy.
func moveBoltToWAL(walDir string, bolt *raftboltdb.BoltStore, segmentSize int, hl hclog.Logger) (*walLog, string, error) {
	tmp := walDir + ".tmp"
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return nil, "", fmt.Errorf("create %s: %w", tmp, err)
	}
	w, err := openWALLog(tmp, segmentSize, hl)
	if err != nil {
		return nil, "", err
	}
	first, last, err := copyLog(w, bolt)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", tmp, cerr)
	}
	if err != nil {
		return nil, "", fmt.Errorf("copy the log from raft.db into a new WAL: %w", err)
	}
	if err := os.RemoveAll(walDir); err != nil {
		return nil, "", fmt.Errorf("remove unfinished WAL %s: %w", walDir, err)
	}
	if err := os.Rename(tmp, walDir); err != nil {
		return nil, "", fmt.Errorf("move the new WAL into place: %w", err)
	}
	if err := syncDir(filepath.Dir(walDir)); err != nil {
		return nil, "", err
	}
	if err := bolt.Set(logStoreKey, []byte(LogStoreWAL)); err != nil {
		return nil, "", fmt.Errorf("record the log store in raft.db: %w", err)
	}
	if err := clearLog(bolt); err != nil {
		return nil, "", fmt.Errorf("drop raft.db's copy of the log: %w", err)
	}
	w, err = openWALLog(walDir, segmentSize, hl)
	return w, fmt.Sprintf("configured; moved entries %d-%d from raft.db", first, last), err
}

// moveWALToBolt copies the WAL's log into raft.db, records it, and then
// removes the WAL.
func moveWALToBolt(walDir string, bolt *raftboltdb.BoltStore, segmentSize int, hl hclog.Logger) (string, error) {
	// Anything in raft.db is a stale copy while the WAL is recorded.
	if err := clearLog(bolt); err != nil {
		return "", fmt.Errorf("drop raft.db's stale copy of the log: %w", err)
	}
	w, err := openWALLog(walDir, segmentSize, hl)
	if err != nil {
		return "", err
	}
	first, last, err := copyLog(bolt, w)
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", walDir, cerr)
	}
	if err != nil {
		return "", fmt.Errorf("copy the log from the WAL into raft.db: %w", err)
	}
	if err := bolt.Set(logStoreKey, []byte(LogStoreBoltDB)); err != nil {
		return "", fmt.Errorf("record the log store in raft.db: %w", err)
	}
	if err := os.RemoveAll(walDir); err != nil {
		return "", fmt.Errorf("remove the WAL after moving its log to raft.db: %w", err)
	}
	return fmt.Sprintf("configured; moved entries %d-%d from the WAL", first, last), nil
}

// copyLog appends every entry of src to dst, which must be empty, and
// returns the range copied (0, 0 for an empty log).
func copyLog(dst, src raft.LogStore) (first, last uint64, err error) {
	if first, err = src.FirstIndex(); err != nil {
		return 0, 0, fmt.Errorf("first index: %w", err)
	}
	if last, err = src.LastIndex(); err != nil {
		return 0, 0, fmt.Errorf("last index: %w", err)
	}
	if last == 0 {
		return 0, 0, nil
	}
	batch := make([]*raft.Log, 0, copyBatch)
	for i := first; i <= last; i++ {
		e := new(raft.Log)
		if err := src.GetLog(i, e); err != nil {
			return 0, 0, fmt.Errorf("read entry %d of %d-%d: %w", i, first, last, err)
		}
		batch = append(batch, e)
		if len(batch) == copyBatch || i == last {
			if err := dst.StoreLogs(batch); err != nil {
				return 0, 0, fmt.Errorf("write entries %d-%d: %w", batch[0].Index, i, err)
			}
			batch = batch[:0]
		}
	}
	return first, last, nil
}

// clearLog deletes every entry of a log.
func clearLog(s raft.LogStore) error {
	first, err := s.FirstIndex()
	if err != nil {
		return err
	}
	last, err := s.LastIndex()
	if err != nil || last == 0 {
		return err
	}
	return s.DeleteRange(first, last)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s to sync it: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
