package ops

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Snapshot file format, version 1:
//
//	magic "KEELSON-SNAPSHOT\n" | format version (uint32 big endian)
//	header length (uint32 big endian) | header (JSON, SnapshotHeader)
//	state machine snapshot (fsm.View.WriteSnapshot, itself versioned and CRC'd)
//	SHA-256 of every byte above (32 bytes)
//
// The header repeats what the state machine snapshot holds (index, revision,
// state hash) so an operator can inspect a file without decoding it, and so
// a restore can prove that what it decoded is what was saved.
const (
	snapFileMagic   = "KEELSON-SNAPSHOT\n"
	snapFileVersion = 1
	maxHeaderBytes  = 1 << 20
)

// ErrBadSnapshotFile wraps every reason a snapshot file is refused.
var ErrBadSnapshotFile = errors.New("bad snapshot file")

// SnapshotHeader describes the state a snapshot file holds.
type SnapshotHeader struct {
	// Index is the raft index of the last command in the state.
	Index uint64 `json:"index"`
	// Revision is the etcd revision of the state (the index of its last write).
	Revision int64 `json:"revision"`
	// CompactRevision: revisions below it are not in the file.
	CompactRevision int64 `json:"compactRevision"`
	// Keys is the number of live keys.
	Keys int64 `json:"keys"`
	// StateHash is fsm.View.Hash of the state, in hex.
	StateHash string `json:"stateHash"`
	// Term and Node say where the snapshot was taken: the raft term and the
	// name of the server that answered.
	Term uint64 `json:"term"`
	Node string `json:"node"`
	// Created is when the server wrote it (its clock; informational).
	Created time.Time `json:"created"`
}

// NewSnapshotHeader describes v.
func NewSnapshotHeader(v *fsm.View, term uint64, node string, now time.Time) (SnapshotHeader, error) {
	count, err := v.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true})
	if err != nil {
		return SnapshotHeader{}, fmt.Errorf("counting keys at index %d: %w", v.Index(), err)
	}
	return SnapshotHeader{
		Index:           v.Index(),
		Revision:        v.Rev(),
		CompactRevision: v.CompactRev(),
		Keys:            count.Count,
		StateHash:       hashString(v.Hash()),
		Term:            term,
		Node:            node,
		Created:         now.UTC(),
	}, nil
}

func hashString(h uint64) string { return fmt.Sprintf("%016x", h) }

// WriteSnapshotFile streams v as a snapshot file to w and returns the
// file's SHA-256 (the trailer it wrote).
func WriteSnapshotFile(w io.Writer, hdr SnapshotHeader, v *fsm.View) ([]byte, error) {
	js, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot header: %w", err)
	}
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, sum), 256<<10)
	pre := append([]byte(snapFileMagic), binary.BigEndian.AppendUint32(nil, snapFileVersion)...)
	pre = binary.BigEndian.AppendUint32(pre, uint32(len(js)))
	pre = append(pre, js...)
	if _, err := bw.Write(pre); err != nil {
		return nil, fmt.Errorf("writing snapshot header: %w", err)
	}
	if err := v.WriteSnapshot(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing snapshot at index %d: %w", v.Index(), err)
	}
	trailer := sum.Sum(nil)
	if _, err := w.Write(trailer); err != nil {
		return nil, fmt.Errorf("writing snapshot checksum: %w", err)
	}
	return trailer, nil
}

// SnapshotFile is a snapshot file whose checksum has been verified.
type SnapshotFile struct {
	Path   string
	Header SnapshotHeader
	// SHA256 is the file's trailer, in hex.
	SHA256 string
	Size   int64
	f      *os.File
	off    int64 // where the state machine snapshot starts
	n      int64 // its length
}

// OpenSnapshotFile opens path and verifies its format and checksum. It does
// not decode the state; Decode does.
func OpenSnapshotFile(path string) (*SnapshotFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening snapshot file: %w", err)
	}
	sf, err := readSnapshotFile(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return sf, nil
}

func readSnapshotFile(f *os.File, path string) (*SnapshotFile, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrBadSnapshotFile, path, fmt.Sprintf(format, args...))
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("snapshot file %s: %w", path, err)
	}
	size := st.Size()
	fixed := int64(len(snapFileMagic) + 8)
	if size < fixed+sha256.Size {
		return nil, bad("only %d bytes: not a keelson snapshot (truncated?)", size)
	}
	pre := make([]byte, fixed)
	if _, err := io.ReadFull(f, pre); err != nil {
		return nil, fmt.Errorf("reading snapshot file %s: %w", path, err)
	}
	if !bytes.Equal(pre[:len(snapFileMagic)], []byte(snapFileMagic)) {
		return nil, bad("not a keelson snapshot (no %q magic)", snapFileMagic[:len(snapFileMagic)-1])
	}
	if v := binary.BigEndian.Uint32(pre[len(snapFileMagic):]); v != snapFileVersion {
		return nil, bad("format version %d; this keelson reads version %d", v, snapFileVersion)
	}
	hlen := int64(binary.BigEndian.Uint32(pre[len(snapFileMagic)+4:]))
	if hlen > maxHeaderBytes || fixed+hlen+sha256.Size > size {
		return nil, bad("header length %d does not fit a %d-byte file (truncated?)", hlen, size)
	}
	sum := sha256.New()
	sum.Write(pre)
	if err := hashRange(f, sum, size-sha256.Size-fixed); err != nil {
		return nil, fmt.Errorf("reading snapshot file %s: %w", path, err)
	}
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return nil, fmt.Errorf("reading snapshot file %s: %w", path, err)
	}
	if got := sum.Sum(nil); !bytes.Equal(got, trailer) {
		return nil, bad("SHA-256 mismatch: stored %x, computed %x (file damaged or truncated)", trailer, got)
	}
	js := make([]byte, hlen)
	if _, err := f.ReadAt(js, fixed); err != nil {
		return nil, fmt.Errorf("reading snapshot file %s: %w", path, err)
	}
	sf := &SnapshotFile{Path: path, SHA256: fmt.Sprintf("%x", trailer), Size: size, f: f,
		off: fixed + hlen, n: size - sha256.Size - fixed - hlen}
	if err := json.Unmarshal(js, &sf.Header); err != nil {
		return nil, bad("header: %v", err)
	}
	return sf, nil
}

func hashRange(r io.Reader, h hash.Hash, n int64) error {
	_, err := io.CopyN(h, r, n)
	return err
}

// State returns a reader of the state machine snapshot inside the file.
func (sf *SnapshotFile) State() io.Reader { return io.NewSectionReader(sf.f, sf.off, sf.n) }

// Decode restores the state into a new store and checks it against the
// header: same index, revision and state hash.
func (sf *SnapshotFile) Decode() (*fsm.Store, error) {
	st := fsm.New()
	if err := st.Restore(sf.State()); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrBadSnapshotFile, sf.Path, err)
	}
	v, h := st.View(), sf.Header
	if v.Index() != h.Index || v.Rev() != h.Revision || hashString(v.Hash()) != h.StateHash {
		return nil, fmt.Errorf("%w %s: state (index %d, revision %d, hash %s) differs from its header (index %d, revision %d, hash %s)",
			ErrBadSnapshotFile, sf.Path, v.Index(), v.Rev(), hashString(v.Hash()), h.Index, h.Revision, h.StateHash)
	}
	return st, nil
}

// Close closes the file.
func (sf *SnapshotFile) Close() error { return sf.f.Close() }

// SaveSnapshotFile writes a snapshot file to path atomically: write writes
// the bytes into a temporary file beside path (mode 0600), which is synced,
// verified (checksum and a full decode) and only then renamed over path.
func SaveSnapshotFile(path string, write func(io.Writer) error) (*SnapshotFile, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("creating snapshot file in %s: %w", dir, err)
	}
	tmpName := tmp.Name()
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("restricting %s: %w", tmpName, err)
	}
	if err := write(tmp); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("syncing %s: %w", tmpName, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rereading %s: %w", tmpName, err)
	}
	sf, err := readSnapshotFile(tmp, tmpName)
	if err != nil {
		return nil, fmt.Errorf("the snapshot received does not verify: %w", err)
	}
	if _, err := sf.Decode(); err != nil {
		return nil, fmt.Errorf("the snapshot received does not verify: %w", err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return nil, fmt.Errorf("moving snapshot into place at %s: %w", path, err)
	}
	keep = true
	sf.Path = path
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort on filesystems that refuse
		d.Close()
	}
	return sf, nil
}

// Describe is a one-line summary of the file for the operator.
func (sf *SnapshotFile) Describe() string {
	h := sf.Header
	return "index " + strconv.FormatUint(h.Index, 10) + ", revision " + strconv.FormatInt(h.Revision, 10) +
		", " + strconv.FormatInt(h.Keys, 10) + " keys, " + strconv.FormatInt(sf.Size, 10) + " bytes, taken on " +
		h.Node + " at " + h.Created.Format(time.RFC3339) + ", sha256 " + sf.SHA256
}
