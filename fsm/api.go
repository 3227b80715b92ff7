// Package fsm is Keelson's replicated state machine: a deterministic,
// multi-version key-value store with etcd v3 semantics.
//
// The raft log feeds it commands (Store.Apply); every server that applies the
// same commands at the same indexes reaches the same bytes. There is no clock,
// network or randomness in here: lease expiry, lease IDs and compaction points
// are decided by the leader and arrive as commands.
//
// The revision of a write is the raft index of the command that made it, so
// revisions are increasing but sparse. Reads go through an immutable View that
// costs nothing to take (the trees are persistent), which is also what a raft
// snapshot streams.
package fsm

import (
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Command types. The first byte of every command names its type; the rest is
// the protobuf encoding of the etcd request it carries. Apply refuses unknown
// types loudly (ErrUnknownCommand); kvserver.Machine then halts the raft
// node instead of skipping the entry, so a server that is too old for a log
// entry stops rather than diverging (see features.go for how new types are
// introduced).
const (
	// CmdTxn carries a pb.TxnRequest. Put, DeleteRange and Txn are all sent as
	// transactions (a Put is a Txn with no compares and one success op).
	CmdTxn byte = 1
	// CmdCompact carries a pb.CompactionRequest.
	CmdCompact byte = 2
	// CmdLeaseGrant carries a pb.LeaseGrantRequest whose ID was chosen by the
	// leader (never 0).
	CmdLeaseGrant byte = 3
	// CmdLeaseRevoke carries a pb.LeaseRevokeRequest from a client.
	CmdLeaseRevoke byte = 4
	// CmdLeaseExpire carries a pb.LeaseRevokeRequest proposed by the leader's
	// expiry loop. Unlike a revoke, expiring a lease that no longer exists is
	// not an error (a client may have revoked it concurrently).
	CmdLeaseExpire byte = 5
	// CmdAlarm carries a pb.AlarmRequest (ACTIVATE or DEACTIVATE) that
	// raises or clears an alarm; see quota.go.
	CmdAlarm byte = 6
	// CmdFenced wraps another command with the raft term it must commit in
	// (8 bytes, big-endian, then the inner command): it is applied only from
	// a log entry of exactly that term, and refused (ErrFenced) from any
	// other. A deposed leader's plugin writes carry its term, so one that a
	// follower forwards to the new leader cannot commit there. See fence.go.
	CmdFenced byte = 7
)

// Errors returned in Result.Err or by reads. kvserver maps them to etcd's gRPC
// errors.
var (
	ErrCompacted     = errors.New("fsm: required revision has been compacted")
	ErrFutureRev     = errors.New("fsm: required revision is a future revision")
	ErrLeaseNotFound = errors.New("fsm: requested lease not found")
	ErrLeaseExists   = errors.New("fsm: lease already exists")
	ErrDuplicateKey  = errors.New("fsm: duplicate key given in txn request")
	ErrKeyNotFound   = errors.New("fsm: key not found") // put with ignore_value/ignore_lease on a missing key
	// ErrNoSpace refuses a command that could grow the store while the
	// NOSPACE alarm is raised (etcd's "mvcc: database space exceeded").
	ErrNoSpace        = errors.New("fsm: database space exceeded")
	ErrUnknownCommand = errors.New("fsm: unknown command type")
	ErrBadCommand     = errors.New("fsm: malformed command")
	// ErrFenced refuses a CmdFenced command from a log entry of another term.
	ErrFenced = errors.New("fsm: write fenced: proposed for another raft term")
	// ErrInvalidSortOption is returned by a Range whose sort order or target
	// is not one etcd defines (etcd's API layer refuses these too).
	ErrInvalidSortOption = errors.New("fsm: invalid sort option")
	// ErrStaleIndex is returned by Apply when the index does not increase;
	// the command is not applied.
	ErrStaleIndex = errors.New("fsm: raft index does not increase")
	// ErrBadSnapshot wraps every snapshot decoding failure (magic, format
	// version, checksum, truncation).
	ErrBadSnapshot = errors.New("fsm: bad snapshot")
)

// Result is what Apply returns for one command. Exactly one of the response
// fields is set when Err is nil. Response headers (top level and nested) are
// left nil: kvserver fills them (cluster/member IDs, raft term, revision).
type Result struct {
	// Rev is the store revision after the command (the command's index if it
	// wrote, else the previous revision).
	Rev int64
	// Err is a semantic failure of the command (a lease that does not exist,
	// a compaction of the future, ...). The command still consumed its index.
	Err error

	Txn         *pb.TxnResponse
	Compact     *pb.CompactionResponse
	LeaseGrant  *pb.LeaseGrantResponse
	LeaseRevoke *pb.LeaseRevokeResponse
	Alarm       *pb.AlarmResponse
}

// Event is one change to one key, as a watcher sees it. PrevKv is the key's
// previous value, nil when the key did not exist. Events of one revision come
// in the order the transaction made them.
type Event struct {
	Type   mvccpb.Event_EventType
	Kv     *mvccpb.KeyValue
	PrevKv *mvccpb.KeyValue
}

// Lease is a lease as the state machine knows it: its ID, granted TTL in
// seconds and the keys attached to it. Remaining time is the leader's business.
type Lease struct {
	ID  int64
	TTL int64
}

// The package's surface is its concrete types, documented where they are
// defined: Store (Apply from the raft FSM goroutine, View and Restore from
// anywhere), View (an immutable state: Index, Rev, CompactRev, Next, Range,
// Events, Lease, Leases, Hash, HashKV, Size, Alarms, WriteSnapshot),
// Encode (the only way commands are made) and the quota and feature-level
// helpers (VersionCost, TxnCost, CommandLevel). There are no interfaces
// mirroring them: they drifted from the code they described.
