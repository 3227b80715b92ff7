package fsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// state is the whole logical state at one applied index. It is immutable
// once published: its trees are frozen copies (see cow) and its event log a
// bounded window on append-only chunks, so taking a state is O(1).
type state struct {
	index      uint64
	rev        int64
	compactRev int64
	// current holds the live keys' newest records ordered by key.
	current *kvTree
	// versions holds every retained version ordered by (key, revision): the
	// record written at that revision, or a tombstone for a delete. Only
	// the final value of a key in a revision is kept; events keep every step.
	versions *kvTree
	// events is the retained history in revision order.
	events eventLog
	// leases holds every lease ordered by ID.
	leases *btree.BTreeG[Lease]
	// leaseKeys indexes (lease, key) for every attached key.
	leaseKeys *btree.BTreeG[leaseKey]
	// size is the accounted size (see quota.go); alarms the raised alarms,
	// sorted, never changed in place.
	size   int64
	alarms []Alarm
}

// probes recycles the search items of view readers: a probe handed to the
// trees' comparator escapes, so a fresh one per read would be an allocation.
var probes = sync.Pool{New: func() any { return new(record) }}

// reader returns a reader of the state; put its probe back in probes
// when done.
func (st *state) reader() reader {
	p := probes.Get().(*record)
	return reader{cur: st.current, ver: st.versions, rev: st.rev, compactRev: st.compactRev, probe: p}
}

// writer is the state the Apply goroutine changes in place. Its trees are
// private; freeze publishes copies of them.
type writer struct {
	index      uint64
	rev        int64
	compactRev int64
	current    cow[*record]
	versions   cow[*record]
	events     eventLog
	leases     cow[Lease]
	leaseKeys  cow[leaseKey]
	size       int64
	alarms     []Alarm
	// probe is the search item of the writer's own lookups.
	probe record
}

// newWriter is the store before any write. Its revision is 1, as in etcd:
// clients (kube-apiserver) treat revision 0 as "no revision". Raft index 1
// is the bootstrap configuration entry, never a command, so no write can
// carry revision 1 and revisions stay strictly increasing.
func newWriter() *writer {
	return &writer{
		rev:       1,
		current:   newCow(byKey),
		versions:  newCow(byKeyRev),
		leases:    newCow(byLeaseID),
		leaseKeys: newCow(byLeaseKey),
	}
}

// freeze returns the writer's state as an immutable state.
func (w *writer) freeze() state {
	return state{
		index:      w.index,
		rev:        w.rev,
		compactRev: w.compactRev,
		current:    w.current.frozen(),
		versions:   w.versions.frozen(),
		events:     w.events,
		leases:     w.leases.frozen(),
		leaseKeys:  w.leaseKeys.frozen(),
		size:       w.size,
		alarms:     w.alarms,
	}
}

// get returns key's live value in the writer's state.
func (w *writer) get(key []byte) (*record, bool) {
	return getKV(w.current.w, &w.probe, key)
}

func (w *writer) hasLease(id int64) bool {
	_, ok := w.leases.w.Get(Lease{ID: id})
	return ok
}

// Store is the state machine. Apply and Restore are called by one writer
// (the raft FSM); View and each view's Next are safe for any number of readers.
type Store struct {
	mu  sync.Mutex // serializes writers; readers never take it
	w   *writer    // guarded by mu
	cur atomic.Pointer[View]
}

// New returns an empty store at index 0, revision 1.
func New() *Store {
	s := &Store{w: newWriter()}
	s.cur.Store(&View{state: s.w.freeze(), next: make(chan struct{})})
	return s
}

// View returns the current immutable view. O(1).
func (s *Store) View() *View { return s.cur.Load() }

// publish makes the writer's state the current view and wakes everyone
// waiting on the old.
func (s *Store) publish() {
	old := s.cur.Swap(&View{state: s.w.freeze(), next: make(chan struct{})})
	close(old.next)
}

// Apply applies the command at raft index index, from a log entry whose
// term is unknown (tests, tools): a CmdFenced command is refused. Every
// index, even one whose command fails, advances View.Index; only writes
// advance Rev.
func (s *Store) Apply(index uint64, cmd []byte) Result {
	return s.ApplyEntry(index, 0, cmd)
}

// ApplyEntry applies the command of the raft log entry at index, of term
// term.
func (s *Store) ApplyEntry(index, term uint64, cmd []byte) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.w.index {
		return Result{Rev: s.w.rev, Err: fmt.Errorf("%w: index %d after applied index %d", ErrStaleIndex, index, s.w.index)}
	}
	w := s.w
	w.index = index
	cmd, err := unfence(cmd, term)
	res := Result{Rev: w.rev, Err: err}
	if err == nil {
		res = w.apply(index, cmd)
	}
	s.publish()
	return res
}

// apply is the deterministic transition: the same state, index and command
// always give the same next state and result. A command that fails changes
// nothing but the index: every command validates before its first write.
func (w *writer) apply(index uint64, cmd []byte) Result {
	w.index = index
	if len(cmd) == 0 {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: empty command at index %d", ErrBadCommand, index)}
	}
	typ, body := cmd[0], cmd[1:]
	msg, err := newMessage(typ)
	if err != nil {
		return Result{Rev: w.rev, Err: fmt.Errorf("index %d: %w", index, err)}
	}
	if err := proto.Unmarshal(body, msg); err != nil {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: command type %d at index %d: %w", ErrBadCommand, typ, index, err)}
	}
	switch m := msg.(type) {
	case *pb.TxnRequest:
		return w.applyTxn(m)
	case *pb.CompactionRequest:
		return w.applyCompact(m)
	case *pb.LeaseGrantRequest:
		return w.applyLeaseGrant(m)
	case *pb.LeaseRevokeRequest:
		return w.applyLeaseRevoke(m, typ == CmdLeaseExpire)
	case *pb.AlarmRequest:
		return w.applyAlarm(m)
	}
	return Result{Rev: w.rev, Err: fmt.Errorf("%w: %d", ErrUnknownCommand, typ)}
}

// newMessage returns an empty request of the type a command carries.
func newMessage(typ byte) (proto.Message, error) {
	switch typ {
	case CmdTxn:
		return &pb.TxnRequest{}, nil
	case CmdCompact:
		return &pb.CompactionRequest{}, nil
	case CmdLeaseGrant:
		return &pb.LeaseGrantRequest{}, nil
	case CmdLeaseRevoke, CmdLeaseExpire:
		return &pb.LeaseRevokeRequest{}, nil
	case CmdAlarm:
		return &pb.AlarmRequest{}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownCommand, typ)
}

// Encode builds a command of type typ carrying msg, which must be the
// request type that typ names.
func Encode(typ byte, msg proto.Message) ([]byte, error) {
	want, err := newMessage(typ)
	if err != nil {
		return nil, err
	}
	if msg == nil || want.ProtoReflect().Descriptor() != msg.ProtoReflect().Descriptor() {
		return nil, fmt.Errorf("%w: command type %d carries %T, got %T", ErrBadCommand, typ, want, msg)
	}
	// One allocation of the final size, the type byte first: marshalling
	// into a fresh slice and prepending the byte would copy every command.
	o := proto.MarshalOptions{Deterministic: true}
	cmd := make([]byte, 1, 1+o.Size(msg))
	cmd[0] = typ
	o.UseCachedSize = true // Size just computed them
	cmd, err = o.MarshalAppend(cmd, msg)
	if err != nil {
		return nil, fmt.Errorf("encoding command type %d: %w", typ, err)
	}
	return cmd, nil
}
