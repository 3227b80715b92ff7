package ops

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Layout of a server's data dir, as core/server and core/raftnode create it.
const (
	raftDirName  = "raft"
	raftDBName   = "raft.db"
	adminSock    = "admin.sock"
	etcdSock     = "etcd.sock"
	snapsRetain  = 2
	lockWaitTime = time.Second
)

// AdminSocket is where a running server serves the admin protocol.
func AdminSocket(dataDir string) string { return filepath.Join(dataDir, adminSock) }

// ServerIdentity is how a server appears in the raft configuration: its
// --node-name and the raft address other servers dial.
type ServerIdentity struct {
	NodeName string
	RaftAddr string
}

func (id ServerIdentity) validate() error {
	if id.NodeName == "" {
		return errors.New("--node-name is required: the name the server will run with")
	}
	host, port, err := net.SplitHostPort(id.RaftAddr)
	switch {
	case err != nil:
		return fmt.Errorf("--raft-advertise %q is not host:port: %w", id.RaftAddr, err)
	case port == "0" || port == "":
		return fmt.Errorf("--raft-advertise %q: give the raft port the server will bind (--raft-bind), not 0", id.RaftAddr)
	case net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
		return fmt.Errorf("--raft-advertise %q: an unspecified address cannot be dialed; give this server's IP", id.RaftAddr)
	}
	return nil
}

func (id ServerIdentity) configuration() raft.Configuration {
	return raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(id.NodeName), Address: raft.ServerAddress(id.RaftAddr),
	}}}
}

// refuseIfRunning fails when a server answers on one of the data dir's
// sockets.
func refuseIfRunning(dataDir string) error {
	for _, name := range []string{adminSock, etcdSock} {
		p := filepath.Join(dataDir, name)
		if c, err := net.DialTimeout("unix", p, lockWaitTime); err == nil {
			c.Close()
			return fmt.Errorf("a keelson server is running on --data-dir %s (%s answers): stop it first", dataDir, p)
		}
	}
	return nil
}

// RestoreResult is what RestoreSnapshot did.
type RestoreResult struct {
	Snapshot SnapshotHeader
	RaftDir  string
	Server   ServerIdentity
}

// RestoreSnapshot makes dataDir the state of a new single-server cluster
// whose store is the snapshot file's: it writes a raft snapshot at the
// saved index (term 1) whose configuration is this server alone, so
// `keelson server` started with the same node name restores it and elects
// itself; other servers then join it. The server must be stopped and
// dataDir must hold no raft state. Only raft state is written: certificates
// are whatever dataDir/pki holds when the server starts (new ones if none).
func RestoreSnapshot(snapshotPath, dataDir string, id ServerIdentity) (RestoreResult, error) {
	if err := id.validate(); err != nil {
		return RestoreResult{}, err
	}
	if err := refuseIfRunning(dataDir); err != nil {
		return RestoreResult{}, err
	}
	raftDir := filepath.Join(dataDir, raftDirName)
	if entries, err := os.ReadDir(raftDir); err == nil && len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return RestoreResult{}, fmt.Errorf("--data-dir %s already holds raft state (%s: %s): restore only into a fresh data dir; to recover this server's own data after losing quorum use `keelson cluster-reset`",
			dataDir, raftDir, strings.Join(names, ", "))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return RestoreResult{}, fmt.Errorf("inspecting %s: %w", raftDir, err)
	}
	sf, err := OpenSnapshotFile(snapshotPath)
	if err != nil {
		return RestoreResult{}, err
	}
	defer sf.Close()
	// Decoding proves this binary can read the state before anything is
	// written.
	if _, err := sf.Decode(); err != nil {
		return RestoreResult{}, err
	}
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return RestoreResult{}, fmt.Errorf("creating %s: %w", raftDir, err)
	}
	// raftDir was empty or missing: on failure, leave it empty so the
	// operator can simply run the restore again.
	res, err := writeRestoreSnapshot(sf, raftDir, id)
	if err != nil {
		if rmErr := os.RemoveAll(raftDir); rmErr != nil {
			err = fmt.Errorf("%w (and cleaning up %s: %v)", err, raftDir, rmErr)
		}
		return RestoreResult{}, err
	}
	return res, nil
}

func writeRestoreSnapshot(sf *SnapshotFile, raftDir string, id ServerIdentity) (RestoreResult, error) {
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, snapsRetain, quietLogger())
	if err != nil {
		return RestoreResult{}, fmt.Errorf("opening snapshot store in %s: %w", raftDir, err)
	}
	// A raft index of 0 means "no snapshot"; an empty store is at index 0,
	// and the store accepts any later index.
	index := max(sf.Header.Index, 1)
	// The transport only encodes the legacy peer list (the address).
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id.RaftAddr))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, id.configuration(), 1, trans)
	if err != nil {
		return RestoreResult{}, fmt.Errorf("creating raft snapshot in %s: %w", raftDir, err)
	}
	if _, err := io.Copy(sink, sf.State()); err != nil {
		_ = sink.Cancel()
		return RestoreResult{}, fmt.Errorf("writing raft snapshot in %s: %w", raftDir, err)
	}
	if err := sink.Close(); err != nil {
		return RestoreResult{}, fmt.Errorf("finishing raft snapshot in %s: %w", raftDir, err)
	}
	return RestoreResult{Snapshot: sf.Header, RaftDir: raftDir, Server: id}, nil
}

// ResetResult is what ResetCluster did.
type ResetResult struct {
	// Previous is the raft configuration before the reset.
	Previous []raft.Server
	Server   ServerIdentity
	// Index and Revision are the state kept.
	Index    uint64
	Revision int64
	// AlreadyAlone: the configuration already was this server alone, as a
	// voter at the same address; nothing was changed.
	AlreadyAlone bool
}

// ResetCluster rewrites the raft configuration in a stopped server's data
// dir to this server alone (raft.RecoverCluster), keeping all its data, so
// it can start and elect itself after the cluster lost quorum for good.
// id.RaftAddr may be empty: the address the configuration has for the node
// is kept. It refuses when a server is running on dataDir, when there is no
// raft state, and when id.NodeName is not in the configuration (a wrong
// --node-name would leave a server that never elects itself).
//
// RecoverCluster applies every entry in this server's log, including ones
// that may never have committed: the kept state is this server's view.
func ResetCluster(dataDir string, id ServerIdentity) (ResetResult, error) {
	if id.NodeName == "" {
		return ResetResult{}, errors.New("--node-name is required: the name this server runs with")
	}
	if err := refuseIfRunning(dataDir); err != nil {
		return ResetResult{}, err
	}
	raftDir := filepath.Join(dataDir, raftDirName)
	dbPath := filepath.Join(raftDir, raftDBName)
	if _, err := os.Stat(dbPath); err != nil {
		return ResetResult{}, fmt.Errorf("no raft state at %s (is --data-dir right?): %w", dbPath, err)
	}
	st, err := openRaftState(raftDir)
	if err != nil {
		return ResetResult{}, err
	}
	defer st.close()
	prev, err := st.configuration()
	if err != nil {
		return ResetResult{}, err
	}
	res := ResetResult{Previous: prev.Servers}
	var self *raft.Server
	var ids []string
	for i, s := range prev.Servers {
		ids = append(ids, string(s.ID))
		if string(s.ID) == id.NodeName {
			self = &prev.Servers[i]
		}
	}
	if self == nil {
		return res, fmt.Errorf("--node-name %q is not in this data dir's raft configuration (servers: %s): pass the name this server runs with",
			id.NodeName, strings.Join(ids, ", "))
	}
	if id.RaftAddr == "" {
		id.RaftAddr = string(self.Address)
	}
	if err := id.validate(); err != nil {
		return res, err
	}
	res.Server = id
	if len(prev.Servers) == 1 && self.Suffrage == raft.Voter && string(self.Address) == id.RaftAddr {
		res.AlreadyAlone = true
		return res, nil
	}
	store := fsm.New()
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id.NodeName)
	conf.Logger = quietLogger()
	conf.NoLegacyTelemetry = true
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id.RaftAddr))
	defer trans.Close()
	if err := raft.RecoverCluster(conf, offlineFSM{store}, st.stores.Log, st.stores.Stable, st.snaps, trans, id.configuration()); err != nil {
		return res, fmt.Errorf("resetting the raft configuration in %s: %w", raftDir, err)
	}
	res.Index, res.Revision = store.View().Index(), store.View().Rev()
	return res, nil
}

// raftState is a stopped server's raft stores, opened directly.
type raftState struct {
	dir    string
	stores *raftnode.OfflineStores
	snaps  *raft.FileSnapshotStore
}

func openRaftState(raftDir string) (*raftState, error) {
	stores, err := raftnode.OpenOffline(raftDir)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%s is locked by another process: a keelson server is running on this data dir; stop it first", filepath.Join(raftDir, raftDBName))
	}
	if err != nil {
		return nil, fmt.Errorf("opening the raft log in %s: %w", raftDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, snapsRetain, quietLogger())
	if err != nil {
		_ = stores.Close()
		return nil, fmt.Errorf("opening snapshot store in %s: %w", raftDir, err)
	}
	return &raftState{dir: raftDir, stores: stores, snaps: snaps}, nil
}

func (st *raftState) close() { _ = st.stores.Close() }

// configuration is the latest raft configuration in the stores: the newest
// snapshot's, replaced by any configuration entry in the log after it. Like
// raft's own, it may include an entry that never committed.
func (st *raftState) configuration() (raft.Configuration, error) {
	var conf raft.Configuration
	var after uint64
	metas, err := st.snaps.List()
	if err != nil {
		return conf, fmt.Errorf("listing snapshots in %s: %w", st.dir, err)
	}
	if len(metas) > 0 {
		conf, after = metas[0].Configuration, metas[0].Index
	}
	log := st.stores.Log
	first, err := log.FirstIndex()
	if err != nil {
		return conf, fmt.Errorf("reading raft log in %s: %w", st.dir, err)
	}
	last, err := log.LastIndex()
	if err != nil {
		return conf, fmt.Errorf("reading raft log in %s: %w", st.dir, err)
	}
	for i := max(first, after+1); i <= last && i > 0; i++ {
		var l raft.Log
		if err := log.GetLog(i, &l); err != nil {
			return conf, fmt.Errorf("reading raft log entry %d in %s: %w", i, st.dir, err)
		}
		if l.Type == raft.LogConfiguration {
			conf = raft.DecodeConfiguration(l.Data)
		}
	}
	if len(conf.Servers) == 0 {
		return conf, fmt.Errorf("the raft state in %s has no configuration: this server never joined a cluster, so there is nothing to reset", st.dir)
	}
	slices.SortFunc(conf.Servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return conf, nil
}

// offlineFSM lets raft.RecoverCluster replay the log into a store and
// snapshot it.
type offlineFSM struct{ store *fsm.Store }

func (f offlineFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.store.Apply(l.Index, l.Data)
}

func (f offlineFSM) Snapshot() (raft.FSMSnapshot, error) { return offlineSnapshot{f.store.View()}, nil }

func (f offlineFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.store.Restore(rc)
}

type offlineSnapshot struct{ v *fsm.View }

func (s offlineSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.v.WriteSnapshot(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (offlineSnapshot) Release() {}

// quietLogger keeps raft's informational lines out of the operator's
// terminal; the commands report what they did themselves.
func quietLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
}
