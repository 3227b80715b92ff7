package raftnode

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func openTestBolt(t *testing.T, dir string) *raftboltdb.BoltStore {
	t.Helper()
	b, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// openTestLog runs openLog on dir's raft.db as a server configured with
// store does, and returns the log, raft.db and the line openLog logged.
func openTestLog(t *testing.T, dir, store string) (raft.LogStore, *raftboltdb.BoltStore, string, error) {
	t.Helper()
	bolt := openTestBolt(t, dir)
	var buf bytes.Buffer
	cfg := DefaultConfig()
	cfg.DataDir, cfg.LogStore, cfg.WALSegmentSize = dir, store, testSegmentSize
	logs, w, err := openLog(cfg, bolt, slog.New(slog.NewTextHandler(&buf, nil)), quietHCLog())
	if w != nil {
		t.Cleanup(func() { _ = w.Close() })
	}
	return logs, bolt, buf.String(), err
}

func mustOpenTestLog(t *testing.T, dir, store string) (raft.LogStore, *raftboltdb.BoltStore, string) {
	t.Helper()
	logs, bolt, line, err := openTestLog(t, dir, store)
	if err != nil {
		t.Fatalf("openLog(%s): %v", store, err)
	}
	return logs, bolt, line
}

func recorded(t *testing.T, bolt *raftboltdb.BoltStore) string {
	t.Helper()
	v, err := bolt.Get(logStoreKey)
	if err != nil {
		t.Fatalf("read %s: %v", logStoreKey, err)
	}
	return string(v)
}

func wantEmpty(t *testing.T, s raft.LogStore, what string) {
	t.Helper()
	if last, err := s.LastIndex(); err != nil || last != 0 {
		t.Fatalf("%s: last index %d (err %v), want an empty log", what, last, err)
	}
}

// legacyDir is a data dir written before Config.LogStore existed: raft.db
// holds the log (entries 1-300) and records no store.
func legacyDir(t *testing.T) (string, logModel) {
	t.Helper()
	dir := t.TempDir()
	b, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	m := logModel{first: 1, es: entries(1, 300, 2)}
	if err := b.StoreLogs(m.es); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func closeAll(t *testing.T, logs raft.LogStore, bolt *raftboltdb.BoltStore) {
	t.Helper()
	if w, ok := logs.(*walLog); ok {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := bolt.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenLogNewDataDir(t *testing.T) {
	for _, store := range []string{LogStoreWAL, LogStoreBoltDB} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			logs, bolt, line := mustOpenTestLog(t, dir, store)
			if got := recorded(t, bolt); got != store {
				t.Errorf("raft.db records %q, want %q", got, store)
			}
			if !strings.Contains(line, "store="+store) || !strings.Contains(line, "new log") {
				t.Errorf("log line %q does not say a new %s log is used", line, store)
			}
			_, isWAL := logs.(*walLog)
			if isWAL != (store == LogStoreWAL) {
				t.Errorf("log store is %T for %s", logs, store)
			}
			_, err := os.Stat(filepath.Join(dir, walDirName))
			if (err == nil) != (store == LogStoreWAL) {
				t.Errorf("%s: stat wal dir: %v", store, err)
			}
		})
	}
}

// TestOpenLogMovesEntries switches an existing data dir from one store to
// the other and back; every entry and raft.db's stable values survive, and
// the store given up is emptied.
func TestOpenLogMovesEntries(t *testing.T) {
	dir, m := legacyDir(t)

	logs, bolt, line := mustOpenTestLog(t, dir, LogStoreWAL)
	if !strings.Contains(line, "moved entries 1-300 from raft.db") {
		t.Errorf("log line %q does not report the move from raft.db", line)
	}
	m.checkAgainst(t, logs, "moved to the WAL")
	wantEmpty(t, bolt, "raft.db after the move")
	if term, err := bolt.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Errorf("CurrentTerm after the move = %d (err %v), want 2", term, err)
	}
	if err := logs.StoreLogs(entries(301, 310, 3)); err != nil {
		t.Fatal(err)
	}
	m.store(entries(301, 310, 3))
	closeAll(t, logs, bolt)

	logs, bolt, line = mustOpenTestLog(t, dir, LogStoreWAL)
	if !strings.Contains(line, "the data dir's log is in the WAL") {
		t.Errorf("log line %q on a restart", line)
	}
	m.checkAgainst(t, logs, "restarted on the WAL")
	closeAll(t, logs, bolt)

	logs, bolt, line = mustOpenTestLog(t, dir, LogStoreBoltDB)
	if !strings.Contains(line, "moved entries 1-310 from the WAL") {
		t.Errorf("log line %q does not report the move from the WAL", line)
	}
	m.checkAgainst(t, logs, "moved back to raft.db")
	if _, err := os.Stat(filepath.Join(dir, walDirName)); !os.IsNotExist(err) {
		t.Errorf("the WAL is still there after moving back: %v", err)
	}
	if got := recorded(t, bolt); got != LogStoreBoltDB {
		t.Errorf("raft.db records %q, want boltdb", got)
	}
}

// TestOpenLogInterruptedMoves starts from the states a crash during a move
// leaves, and checks that the recorded store is the one used and that the
// next start completes the move.
func TestOpenLogInterruptedMoves(t *testing.T) {
	t.Run("copy into the WAL not renamed into place", func(t *testing.T) {
		dir, m := legacyDir(t)
		tmp := filepath.Join(dir, walDirName+".tmp")
		w := newTestWAL(t, mkdir(t, tmp))
		if err := w.StoreLogs(entries(1, 10, 9)); err != nil { // a partial copy
			t.Fatal(err)
		}
		_ = w.Close()
		logs, bolt, _ := mustOpenTestLog(t, dir, LogStoreWAL)
		m.checkAgainst(t, logs, "moved after a half copy")
		wantEmpty(t, bolt, "raft.db")
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("%s left behind: %v", tmp, err)
		}
	})
	t.Run("WAL in place but not recorded", func(t *testing.T) {
		dir, m := legacyDir(t)
		w := newTestWAL(t, mkdir(t, filepath.Join(dir, walDirName)))
		if err := w.StoreLogs(entries(1, 10, 9)); err != nil { // not what raft.db holds
			t.Fatal(err)
		}
		_ = w.Close()
		for _, store := range []string{LogStoreBoltDB, LogStoreWAL} {
			logs, bolt, _ := mustOpenTestLog(t, dir, store)
			m.checkAgainst(t, logs, "raft.db is authoritative, then "+store)
			closeAll(t, logs, bolt)
		}
	})
	t.Run("WAL recorded, raft.db not yet emptied", func(t *testing.T) {
		dir, _ := legacyDir(t)
		w := newTestWAL(t, mkdir(t, filepath.Join(dir, walDirName)))
		walEntries := entries(1, 320, 4)
		if err := w.StoreLogs(walEntries); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		b := openTestBolt(t, dir)
		if err := b.Set(logStoreKey, []byte(LogStoreWAL)); err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
		logs, bolt, _ := mustOpenTestLog(t, dir, LogStoreWAL)
		want := logModel{first: 1, es: walEntries}
		want.checkAgainst(t, logs, "the WAL is authoritative")
		wantEmpty(t, bolt, "raft.db's stale copy")
		closeAll(t, logs, bolt)

		logs, bolt, _ = mustOpenTestLog(t, dir, LogStoreBoltDB)
		want.checkAgainst(t, logs, "moved back to raft.db")
		closeAll(t, logs, bolt)
	})
}

func TestOpenLogRefusesUnreadableRecord(t *testing.T) {
	t.Run("recorded WAL missing", func(t *testing.T) {
		dir := t.TempDir()
		logs, bolt, _ := mustOpenTestLog(t, dir, LogStoreWAL)
		closeAll(t, logs, bolt)
		if err := os.RemoveAll(filepath.Join(dir, walDirName)); err != nil {
			t.Fatal(err)
		}
		for _, store := range []string{LogStoreWAL, LogStoreBoltDB} {
			_, bolt, _, err := openTestLog(t, dir, store)
			if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, walDirName)) || !strings.Contains(err.Error(), "backup") {
				t.Errorf("%s with the recorded WAL gone: %v, want an error naming it and the fix", store, err)
			}
			_ = bolt.Close()
		}
	})
	t.Run("unknown store recorded", func(t *testing.T) {
		dir := t.TempDir()
		b := openTestBolt(t, dir)
		if err := b.Set(logStoreKey, []byte("rocksdb")); err != nil {
			t.Fatal(err)
		}
		_ = b.Close()
		_, _, _, err := openTestLog(t, dir, LogStoreWAL)
		if err == nil || !strings.Contains(err.Error(), `"rocksdb"`) {
			t.Errorf("openLog with an unknown store recorded: %v, want an error naming it", err)
		}
	})
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestNodeSwitchesLogStore restarts one server on the same data dir with the
// other log store each time: every write made before replays from the moved
// log, and the server takes new writes.
func TestNodeSwitchesLogStore(t *testing.T) {
	dir := t.TempDir()
	ctx := ctxT(t, time.Minute)
	written := 0
	for round, store := range []string{LogStoreBoltDB, LogStoreWAL, LogStoreBoltDB, LogStoreWAL} {
		cfg := fastConfig(t, "n1", dir)
		cfg.Bootstrap = true
		cfg.LogStore = store
		cfg.WALSegmentSize = testSegmentSize
		cfg.SnapshotThreshold = 1 << 20 // everything stays in the log
		sm := newKV()
		n := mustNew(t, cfg, sm)
		waitLeader(t, n)
		if _, err := n.LinearizableRead(ctx); err != nil {
			t.Fatalf("round %d (%s): read: %v", round, store, err)
		}
		if got := sm.size(); got != written {
			t.Fatalf("round %d (%s): %d keys replayed, want %d", round, store, got, written)
		}
		for range 100 {
			if _, _, err := n.Apply(ctx, setCmd(fmt.Sprintf("k%03d", written), strings.Repeat("v", 200))); err != nil {
				t.Fatalf("round %d (%s): apply: %v", round, store, err)
			}
			written++
		}
		if err := n.Shutdown(); err != nil {
			t.Fatalf("round %d (%s): shutdown: %v", round, store, err)
		}
	}
}

// TestOpenOfflineLeavesTheLogWhereItIs: operator commands see the log in the
// store that holds it, and opening it moves or records nothing.
func TestOpenOfflineLeavesTheLogWhereItIs(t *testing.T) {
	dir, m := legacyDir(t)
	s, err := OpenOffline(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.checkAgainst(t, s.Log, "legacy raft.db")
	if _, err := s.Stable.Get(logStoreKey); err == nil {
		t.Error("opening offline recorded a log store")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, walDirName)); !os.IsNotExist(err) {
		t.Errorf("opening offline made a WAL: %v", err)
	}

	logs, bolt, _ := mustOpenTestLog(t, dir, LogStoreWAL)
	closeAll(t, logs, bolt)
	s, err = OpenOffline(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Log.(*walLog); !ok {
		t.Fatalf("offline log of a WAL data dir is %T", s.Log)
	}
	m.checkAgainst(t, s.Log, "moved to the WAL")
	wantEmpty(t, s.Stable, "raft.db")
}
