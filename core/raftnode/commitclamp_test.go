package raftnode

import (
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestClampLeaderCommit(t *testing.T) {
	entries := func(idx ...uint64) []*raft.Log {
		var out []*raft.Log
		for _, i := range idx {
			out = append(out, &raft.Log{Index: i})
		}
		return out
	}
	for _, tt := range []struct {
		name        string
		req         raft.AppendEntriesRequest
		want        uint64
		wantClamped bool
	}{
		{"heartbeat", raft.AppendEntriesRequest{}, 0, false},
		{"no entries, commit past prev", raft.AppendEntriesRequest{PrevLogEntry: 5, LeaderCommitIndex: 9}, 5, true},
		{"no entries, caught up", raft.AppendEntriesRequest{PrevLogEntry: 9, LeaderCommitIndex: 9}, 9, false},
		{"entries cover the commit", raft.AppendEntriesRequest{PrevLogEntry: 5, Entries: entries(6, 7, 8), LeaderCommitIndex: 7}, 7, false},
		{"commit past the entries", raft.AppendEntriesRequest{PrevLogEntry: 5, Entries: entries(6, 7), LeaderCommitIndex: 20}, 7, true},
		{"empty log", raft.AppendEntriesRequest{LeaderCommitIndex: 3}, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if got := clampLeaderCommit(&req); got != tt.wantClamped || req.LeaderCommitIndex != tt.want {
				t.Errorf("clamped %v to %d, want %v to %d", got, req.LeaderCommitIndex, tt.wantClamped, tt.want)
			}
		})
	}
}

// recordingFSM records every command raft applies, in order.
type recordingFSM struct {
	mu      sync.Mutex
	applied []string
}

func (f *recordingFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return nil
}
func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.ErrUnexpectedEOF }
func (f *recordingFSM) Restore(io.ReadCloser) error         { return io.ErrUnexpectedEOF }
func (f *recordingFSM) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied)
}

// A deposed leader keeps entries of its old term that never committed.
// The new leader's first request can match its log below them, carry no
// entries and a commit index past them; the follower must not apply them.
func TestDeposedLeaderNeverAppliesItsUncommittedTail(t *testing.T) {
	// The follower's log: configuration, four committed commands, then two
	// of term 1 that only it has.
	logs := raft.NewInmemStore()
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "f", Address: "127.0.0.1:1"}, // rewritten below
		{Suffrage: raft.Voter, ID: "l", Address: "127.0.0.1:2"},
	}}
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	conf.Servers[0].Address = trans.LocalAddr()
	init := []*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(conf)}}
	for i, d := range []string{"c2", "c3", "c4", "c5", "stale6", "stale7"} {
		init = append(init, &raft.Log{Index: uint64(i + 2), Term: 1, Type: raft.LogCommand, Data: []byte(d)})
	}
	if err := logs.StoreLogs(init); err != nil {
		t.Fatal(err)
	}
	if err := logs.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}

	fsm := &recordingFSM{}
	rc := raft.DefaultConfig()
	rc.LocalID = "f"
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = time.Minute, time.Minute, time.Second
	rc.Logger = hclog.NewNullLogger()
	r, err := raft.NewRaft(rc, fsm, logs, logs, raft.NewInmemSnapshotStore(), newCommitClamp(trans))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })

	leader, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, 5*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leader.Close() })
	send := func(req raft.AppendEntriesRequest) {
		t.Helper()
		req.RPCHeader = raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("l"), Addr: []byte(leader.LocalAddr())}
		req.Term = 2
		var resp raft.AppendEntriesResponse
		if err := leader.AppendEntries("f", trans.LocalAddr(), &req, &resp); err != nil {
			t.Fatal(err)
		}
		if !resp.Success {
			t.Fatalf("follower refused %+v: %+v", req, resp)
		}
	}
	// Term 2's leader committed up to 7 with entries of its own from 6 on;
	// this request was built before it appended them.
	send(raft.AppendEntriesRequest{PrevLogEntry: 5, PrevLogTerm: 1, LeaderCommitIndex: 7})
	send(raft.AppendEntriesRequest{PrevLogEntry: 5, PrevLogTerm: 1, LeaderCommitIndex: 7, Entries: []*raft.Log{
		{Index: 6, Term: 2, Type: raft.LogCommand, Data: []byte("new6")},
		{Index: 7, Term: 2, Type: raft.LogCommand, Data: []byte("new7")},
	}})
	want := []string{"c2", "c3", "c4", "c5", "new6", "new7"}
	waitFor(t, 10*time.Second, "the follower applies the new leader's entries", func() bool {
		return len(fsm.seen()) >= len(want)
	})
	if got := fsm.seen(); !slices.Equal(got, want) {
		t.Fatalf("the follower applied %q, want %q", got, want)
	}
}
