package fsm

import (
	"fmt"
	"sync"
	"sync/atomic"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// state is the whole logical state at one applied index. It is immutable
// once published: every tree is persistent, so copying a state is O(1).
type state struct {
	index      uint64
	rev        int64
	compactRev int64
	// current maps key -> live KeyValue.
	current *iradix.Tree[*mvccpb.KeyValue]
	// versions maps versionKey(key, rev) -> KeyValue written at rev, or nil
	// for a delete (tombstone). Only the final value of a key in a revision
	// is kept; events keep every step.
	versions *iradix.Tree[*mvccpb.KeyValue]
	// events maps revKey(rev) -> the revision's events in op order.
	events *iradix.Tree[[]Event]
	// leases maps idKey(id) -> Lease.
	leases *iradix.Tree[Lease]
	// leaseKeys indexes leaseKeyKey(lease, key) for every attached key.
	leaseKeys *iradix.Tree[struct{}]
}

// emptyState is the store before any write. Its revision is 1, as in etcd:
// clients (kube-apiserver) treat revision 0 as "no revision". Raft index 1
// is the bootstrap configuration entry, never a command, so no write can
// carry revision 1 and revisions stay strictly increasing.
func emptyState() state {
	return state{
		rev:       1,
		current:   iradix.New[*mvccpb.KeyValue](),
		versions:  iradix.New[*mvccpb.KeyValue](),
		events:    iradix.New[[]Event](),
		leases:    iradix.New[Lease](),
		leaseKeys: iradix.New[struct{}](),
	}
}

func (st *state) reader() reader {
	return reader{cur: st.current.Root(), ver: st.versions.Root(), rev: st.rev, compactRev: st.compactRev}
}

// Store is the state machine. Apply and Restore are called by one writer
// (the raft FSM); View and Changed are safe for any number of readers.
type Store struct {
	mu  sync.Mutex // serializes writers; readers never take it
	cur atomic.Pointer[View]
}

// New returns an empty store at index 0, revision 1.
func New() *Store {
	s := &Store{}
	s.cur.Store(&View{state: emptyState(), next: make(chan struct{})})
	return s
}

// View returns the current immutable view. O(1).
func (s *Store) View() *View { return s.cur.Load() }

// Changed returns a channel closed when a view newer than the current one
// is published. To wait for something newer than a view you already hold,
// use that view's Next instead (no window between the two calls).
func (s *Store) Changed() <-chan struct{} { return s.cur.Load().next }

// publish makes st the current view and wakes everyone waiting on the old.
func (s *Store) publish(st state) {
	old := s.cur.Swap(&View{state: st, next: make(chan struct{})})
	close(old.next)
}

// Apply applies the command at raft index index. Every index, even one
// whose command fails, advances View.Index; only writes advance Rev.
func (s *Store) Apply(index uint64, cmd []byte) Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.View()
	if index <= cur.index {
		return Result{Rev: cur.rev, Err: fmt.Errorf("%w: index %d after applied index %d", ErrStaleIndex, index, cur.index)}
	}
	next, res := apply(cur.state, index, cmd)
	s.publish(next)
	return res
}

// apply is the pure transition function: the same state, index and command
// always give the same next state and result.
func apply(st state, index uint64, cmd []byte) (state, Result) {
	st.index = index
	if len(cmd) == 0 {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: empty command at index %d", ErrBadCommand, index)}
	}
	typ, body := cmd[0], cmd[1:]
	msg, err := newMessage(typ)
	if err != nil {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("index %d: %w", index, err)}
	}
	if err := proto.Unmarshal(body, msg); err != nil {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: command type %d at index %d: %w", ErrBadCommand, typ, index, err)}
	}
	switch m := msg.(type) {
	case *pb.TxnRequest:
		return applyTxn(st, m)
	case *pb.CompactionRequest:
		return applyCompact(st, m)
	case *pb.LeaseGrantRequest:
		return applyLeaseGrant(st, m)
	case *pb.LeaseRevokeRequest:
		return applyLeaseRevoke(st, m, typ == CmdLeaseExpire)
	}
	return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: %d", ErrUnknownCommand, typ)}
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
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encoding command type %d: %w", typ, err)
	}
	return append([]byte{typ}, body...), nil
}
