package ops

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// storeWithKeys returns a store holding n keys written at indexes 1..n.
func storeWithKeys(t *testing.T, n int) *fsm.Store {
	t.Helper()
	st := fsm.New()
	for i := 1; i <= n; i++ {
		cmd, err := fsm.Encode(fsm.CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{{
			Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte{'k', byte('a' + i%26), byte(i)}, Value: bytes.Repeat([]byte{'v'}, 100)}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if r := st.Apply(uint64(i), cmd); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	return st
}

func saveFile(t *testing.T, st *fsm.Store, path string) *SnapshotFile {
	t.Helper()
	v := st.View()
	hdr, err := NewSnapshotHeader(v, 3, "node-a", time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	sf, err := SaveSnapshotFile(path, func(w io.Writer) error { _, err := WriteSnapshotFile(w, hdr, v); return err })
	if err != nil {
		t.Fatalf("saving snapshot file: %v", err)
	}
	t.Cleanup(func() { sf.Close() })
	return sf
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	st := storeWithKeys(t, 200)
	path := filepath.Join(t.TempDir(), "backup.snap")
	saved := saveFile(t, st, path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file %s: %v, mode %v; want mode 0600", path, err, fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".backup.snap.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	sf, err := OpenSnapshotFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	h := sf.Header
	if h.Index != 200 || h.Revision != 200 || h.Keys != 200 || h.Node != "node-a" || h.Term != 3 {
		t.Errorf("header = %+v; want index 200, revision 200, 200 keys, node-a, term 3", h)
	}
	if sf.SHA256 != saved.SHA256 {
		t.Errorf("checksum on reopen %s, at save %s", sf.SHA256, saved.SHA256)
	}
	got, err := sf.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if got.View().Hash() != st.View().Hash() {
		t.Errorf("decoded state hash differs from the saved store's")
	}
}

func TestSnapshotFileRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.snap")
	saveFile(t, storeWithKeys(t, 50), good)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(off int) []byte {
		b := bytes.Clone(data)
		b[off] ^= 0x40
		return b
	}
	cases := map[string][]byte{
		"empty":            nil,
		"not a snapshot":   []byte("hello, this is not a keelson snapshot file at all, just text"),
		"truncated":        data[:len(data)-100],
		"flipped state":    flip(len(data) / 2),
		"flipped trailer":  flip(len(data) - 1),
		"flipped header":   flip(len(snapFileMagic) + 12),
		"future version":   flip(len(snapFileMagic) + 3),
		"trailing garbage": append(bytes.Clone(data), 'x'),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.snap")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			sf, err := OpenSnapshotFile(p)
			if err == nil {
				_, err = sf.Decode()
				sf.Close()
			}
			if !errors.Is(err, ErrBadSnapshotFile) {
				t.Fatalf("got %v; want ErrBadSnapshotFile", err)
			}
		})
	}
}

func TestSaveSnapshotFileKeepsOldFileOnFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.snap")
	if err := os.WriteFile(path, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := SaveSnapshotFile(path, func(w io.Writer) error {
		w.Write([]byte(snapFileMagic))
		return errors.New("stream broke")
	})
	if err == nil {
		t.Fatal("a failed stream was saved")
	}
	if b, _ := os.ReadFile(path); string(b) != "previous" {
		t.Errorf("the existing file was replaced by a failed save: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}
