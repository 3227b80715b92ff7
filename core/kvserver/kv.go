package kvserver

import (
	"context"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// rangeStreamChunk is how many keys one RangeStream message carries.
const rangeStreamChunk = 1000

// Range reads keys. Linearizable unless the request asks for serializable.
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	v, err := s.readView(ctx, r.Serializable)
	if err != nil {
		return nil, err
	}
	resp, err := v.Range(r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = s.header(v.Rev())
	return resp, nil
}

// RangeStream is Range delivered in chunks, all read from one view. Only the
// last chunk carries the header, more and count (etcd 3.7 semantics).
func (s *Server) RangeStream(r *pb.RangeRequest, stream grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	if err := checkRange(r); err != nil {
		return err
	}
	if r.SortOrder != pb.RangeRequest_NONE || (r.SortTarget != pb.RangeRequest_KEY) ||
		r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		return status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders or revision filters")
	}
	v, err := s.readView(stream.Context(), r.Serializable)
	if err != nil {
		return err
	}
	resp, err := v.Range(r)
	if err != nil {
		return toGRPCError(err)
	}
	// Pin the read revision: a later chunk must describe the same state.
	rev := v.Rev()
	if r.Revision > 0 {
		rev = r.Revision
	}
	kvs := resp.Kvs
	for len(kvs) > rangeStreamChunk {
		if err := stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: kvs[:rangeStreamChunk]}}); err != nil {
			return err
		}
		kvs = kvs[rangeStreamChunk:]
	}
	h := s.header(rev)
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Header: h, Kvs: kvs, More: resp.More, Count: resp.Count}})
}

// Put writes one key.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPut(r); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, fsm.VersionCost(r.Key, r.Value)); err != nil {
		return nil, err
	}
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: r}}}}
	res, err := s.propose(ctx, fsm.CmdTxn, txn)
	if err != nil {
		return nil, err
	}
	resp := res.Txn.Responses[0].GetResponsePut()
	resp.Header = s.header(res.Rev)
	return resp, nil
}

// DeleteRange deletes one key or a range.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}}}
	res, err := s.propose(ctx, fsm.CmdTxn, txn)
	if err != nil {
		return nil, err
	}
	resp := res.Txn.Responses[0].GetResponseDeleteRange()
	resp.Header = s.header(res.Rev)
	return resp, nil
}

// Txn runs a compare-then-else transaction atomically at one revision.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, s.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, fsm.TxnCost(r)); err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, fsm.CmdTxn, r)
	if err != nil {
		return nil, err
	}
	res.Txn.Header = s.header(res.Rev)
	return res.Txn, nil
}

// Compact discards history before the given revision.
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	res, err := s.propose(ctx, fsm.CmdCompact, r)
	if err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{Header: s.header(res.Rev)}, nil
}

// The checks below mirror etcd's request validation, so that malformed
// requests get the same errors before they reach the raft log.

func checkRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPut(r *pb.PutRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if r.IgnoreValue && len(r.Value) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.IgnoreLease && r.Lease != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkTxn(r *pb.TxnRequest, maxOps int) error {
	ops := max(len(r.Compare), len(r.Success), len(r.Failure))
	if ops > maxOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, branch := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range branch {
			if err := checkOp(op, maxOps-ops); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOp(op *pb.RequestOp, maxOps int) error {
	switch req := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return checkRange(req.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPut(req.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		if len(req.RequestDeleteRange.GetKey()) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
		return nil
	case *pb.RequestOp_RequestTxn:
		return checkTxn(req.RequestTxn, maxOps)
	default:
		// A nil or unknown op: etcd rejects it the same way.
		return rpctypes.ErrGRPCKeyNotFound
	}
}
