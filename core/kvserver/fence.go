package kvserver

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/fsm"
)

// FenceTermMetadata is the gRPC metadata key of a write's fence: the raft
// term the write must commit in (decimal). core/apiserver sets it on the
// etcd requests of a plugin identity's writes, from the term the plugin's
// identity carries; the write is then proposed as fsm.CmdFenced and commits
// in that term or not at all (fsm/fence.go says why). A client that sets it
// can only get its own writes refused.
const FenceTermMetadata = "keelson-fence-term"

// fenceGateRecheck is how long the answer of the cluster's feature gate for
// fenced writes is kept: asking it reads the raft configuration.
const fenceGateRecheck = 5 * time.Second

// fenceTerm returns the term a write's metadata fences it to, 0 for none.
func fenceTerm(ctx context.Context) (uint64, error) {
	// ValueFromIncomingContext reads the one key; FromIncomingContext
	// would copy all of the request's metadata on every write.
	vals := metadata.ValueFromIncomingContext(ctx, FenceTermMetadata)
	if len(vals) == 0 {
		return 0, nil
	}
	var term uint64
	for _, v := range vals {
		t, err := strconv.ParseUint(v, 10, 64)
		if err != nil || t == 0 {
			return 0, status.Errorf(codes.InvalidArgument, "metadata %s is %q: it must be a raft term, a positive integer", FenceTermMetadata, v)
		}
		if term != 0 && t != term {
			return 0, status.Errorf(codes.InvalidArgument, "metadata %s carries two terms, %d and %d: send one", FenceTermMetadata, term, t)
		}
		term = t
	}
	return term, nil
}

// fenceGate remembers for a while that every server can apply fenced
// writes. A refusal is not remembered: the gate is asked again on the
// next fenced write, so fencing starts as soon as the last server of a
// rolling upgrade advertises it.
type fenceGate struct {
	until atomic.Int64 // unix nanoseconds the last yes holds until
}

// allowed asks gate, at most once per fenceGateRecheck while it says yes.
// Until every server can apply CmdFenced, writes go unfenced, as before
// (the admission fence still refuses them once a server knows the new term).
func (g *fenceGate) allowed(gate func(typ byte) error) bool {
	if gate == nil {
		return true
	}
	now := time.Now().UnixNano()
	if now < g.until.Load() {
		return true
	}
	if gate(fsm.CmdFenced) != nil {
		return false
	}
	g.until.Store(now + int64(fenceGateRecheck))
	return true
}

// fence wraps cmd, a transaction, in the term ctx's metadata names, if any
// and if every server can apply it.
func (s *Server) fence(ctx context.Context, cmd []byte) ([]byte, error) {
	term, err := fenceTerm(ctx)
	if err != nil || term == 0 || !s.fenceGate.allowed(s.cfg.CommandGate) {
		return cmd, err
	}
	return fsm.Fence(term, cmd), nil
}
